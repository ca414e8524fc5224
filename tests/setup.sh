#!/usr/bin/env bash
# Installs and starts what the test suite needs, when missing: PostgreSQL running on
# 127.0.0.1:5432, MariaDB on 127.0.0.1:3306 (root, no password: the import tests read a
# new-api database from it), the official OpenAI and Anthropic Python SDKs, and Chromium with
# chromedriver and Selenium for the browser checks of /pricing and the console. Safe to run again.
set -euo pipefail

if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
    for _ in $(seq 1 60); do
        pg_isready -h 127.0.0.1 -p 5432 -q && break
        sleep 1
    done
fi

if ! (echo > /dev/tcp/127.0.0.1/3306) 2>/dev/null; then
    if [ ! -x /usr/sbin/mariadbd ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q mariadb-server >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q mariadb-server >/dev/null; }
    fi
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
    for _ in $(seq 1 60); do
        (echo > /dev/tcp/127.0.0.1/3306) 2>/dev/null && break
        sleep 1
    done
fi
# A fresh Debian install lets root in only over the socket: allow it over TCP, no password.
if ! mariadb -uroot -h127.0.0.1 -e 'SELECT 1' >/dev/null 2>&1; then
    mariadb -uroot -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD(''); CREATE DATABASE IF NOT EXISTS test;" || true
fi

if ! python3 -c 'import openai, anthropic' 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check 'openai>=1.50' 'anthropic>=0.40'
fi

# Chromium, its WebDriver and a CJK font (the console's 简体中文 pages) for the browser tests.
# curl: the HTTPS listener's test calls the data plane with it (HTTP/2 by ALPN, a private CA).
if ! command -v curl >/dev/null 2>&1; then
    apt-get install -y -q curl >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q curl >/dev/null; }
fi
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1 \
    || ! fc-list 2>/dev/null | grep -qi 'wenquanyi\|noto sans cjk'; then
    export DEBIAN_FRONTEND=noninteractive
    packages="chromium chromium-driver fonts-wqy-microhei"
    apt-get install -y -q $packages >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q $packages >/dev/null; }
fi

if ! python3 -c 'import selenium' 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check 'selenium>=4.20'
fi
