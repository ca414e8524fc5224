ALTER TABLE channels DROP COLUMN messages_base_url;
ALTER TABLE channels DROP COLUMN protocols;
