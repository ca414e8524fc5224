#!/usr/bin/env bash
# Installs and starts what the test suite needs, when missing: PostgreSQL running on
# 127.0.0.1:5432, the official OpenAI and Anthropic Python SDKs, and Chromium for the
# browser check of /pricing. Safe to run again.
set -euo pipefail

if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
    for _ in $(seq 1 60); do
        pg_isready -h 127.0.0.1 -p 5432 -q && break
        sleep 1
    done
fi

if ! python3 -c 'import openai, anthropic' 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check 'openai>=1.50' 'anthropic>=0.40'
fi

if ! command -v chromium >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }
fi
