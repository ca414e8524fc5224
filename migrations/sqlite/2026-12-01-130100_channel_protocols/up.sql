-- The protocols a channel speaks natively, a JSON list (`[]`: its type's defaults), and where
-- an OpenAI-compatible channel serves Anthropic's Messages API.
ALTER TABLE channels ADD COLUMN protocols TEXT NOT NULL DEFAULT '[]';
ALTER TABLE channels ADD COLUMN messages_base_url TEXT;
