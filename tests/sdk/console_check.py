"""The account console in a real browser (Debian's chromium + chromedriver, driven by Selenium):
sign in through the form, read the balance, create a key and call the gateway with it through the
official openai SDK, find that request's row and cost on the Usage page, redeem a code and find the
ledger row, switch to 简体中文, and save a screenshot of each page.

Environment: ROUTER_URL (the data plane), CONSOLE_EMAIL, CONSOLE_PASSWORD, CONSOLE_CODE (an unused
redemption code), SCREENSHOT_DIR. Prints one JSON object of what it saw (the test compares it with
the control plane's records), then "all console checks passed".
"""

import json
import os
import sys
import tempfile
import time

import openai
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

URL = os.environ["ROUTER_URL"].rstrip("/")
EMAIL = os.environ["CONSOLE_EMAIL"]
PASSWORD = os.environ["CONSOLE_PASSWORD"]
CODE = os.environ["CONSOLE_CODE"]
SHOTS = os.environ["SCREENSHOT_DIR"]
TIMEOUT = 30


def hook(name):
    return f'[data-test="{name}"]'


def find(driver, name):
    return driver.find_element(By.CSS_SELECTOR, hook(name))


def wait_for(driver, name):
    return WebDriverWait(driver, TIMEOUT).until(lambda d: d.find_element(By.CSS_SELECTOR, hook(name)))


def screenshot(driver, name):
    """The whole page, not only the window: the window is resized to the page's height."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    width = driver.get_window_size()["width"]
    driver.set_window_size(width, max(700, min(height + 120, 4000)))
    path = os.path.join(SHOTS, f"{name}.png")
    assert driver.save_screenshot(path), f"cannot save {path}"
    driver.set_window_size(width, 900)


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def main():
    os.makedirs(SHOTS, exist_ok=True)
    os.environ.setdefault("SE_AVOID_STATS", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    profile = tempfile.mkdtemp(prefix="console-chromium-")
    for argument in [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,900",
        "--lang=en-US",
        f"--user-data-dir={profile}",
    ]:
        options.add_argument(argument)
    options.add_experimental_option("prefs", {"intl.accept_languages": "en-US,en"})
    service = Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    driver = webdriver.Chrome(service=service, options=options)
    seen = {}
    try:
        # Signed out, /console is the sign-in form; a wrong password keeps us there.
        driver.get(f"{URL}/console")
        check(driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en", "English first")
        screenshot(driver, "sign-in")
        find(driver, "login-email").send_keys(EMAIL)
        find(driver, "login-password").send_keys("not the password")
        find(driver, "login-submit").click()
        check("Wrong email or password" in wait_for(driver, "login-error").text, "a wrong password is refused")

        # Sign in with the keyboard (Enter in the password field submits the form).
        email = find(driver, "login-email")
        email.clear()
        email.send_keys(EMAIL)
        find(driver, "login-password").send_keys(PASSWORD + Keys.ENTER)
        seen["balance"] = wait_for(driver, "balance").text.strip()
        seen["spent_today_before"] = find(driver, "spent-today").text.strip()

        # A key of our own: its secret is shown once.
        driver.get(f"{URL}/console/keys")
        find(driver, "key-name").send_keys("browser key")
        find(driver, "key-create").click()
        secret = wait_for(driver, "key-secret").text.strip()
        check(secret.startswith("sk-"), f"a key secret: {secret!r}")
        rows = driver.find_elements(By.CSS_SELECTOR, hook("key-row"))
        check(any("browser key" in r.text for r in rows), "the new key is listed")
        seen["key_prefix"] = secret[:16]
        screenshot(driver, "keys")

        # Spend with it through the official SDK.
        client = openai.OpenAI(base_url=f"{URL}/v1", api_key=secret, max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hello from the console test"}]
        )
        completion = raw.parse()
        check(completion.choices[0].message.content, "the SDK got an answer")
        request_id = raw.headers["x-request-id"]
        seen["request_id"] = request_id

        # Its row on the Usage page (usage reaches the control plane asynchronously).
        row = None
        deadline = time.monotonic() + TIMEOUT
        while row is None and time.monotonic() < deadline:
            driver.get(f"{URL}/console/usage")
            try:
                row = driver.find_element(By.CSS_SELECTOR, f'{hook("usage-row")}[data-request-id="{request_id}"]')
            except NoSuchElementException:
                time.sleep(0.3)
        check(row is not None, f"no usage row for {request_id}")
        seen["usage_cost"] = row.find_element(By.CSS_SELECTOR, hook("usage-cost")).text.strip()
        seen["usage_row"] = row.text
        screenshot(driver, "usage")

        # The dashboard now charts it.
        driver.get(f"{URL}/console")
        wait_for(driver, "balance")
        bars = driver.find_elements(By.CSS_SELECTOR, "svg rect.bar")
        check(len(bars) >= 31, f"30 day bars and a model bar, got {len(bars)}")
        seen["balance_after_use"] = find(driver, "balance").text.strip()
        seen["spent_today"] = find(driver, "spent-today").text.strip()
        screenshot(driver, "dashboard")

        # Redeem a code: a notice and a ledger row.
        driver.get(f"{URL}/console/wallet")
        find(driver, "redeem-code").send_keys(CODE)
        find(driver, "redeem-submit").click()
        seen["redeem_notice"] = wait_for(driver, "wallet-notice").text.strip()
        ledger = driver.find_elements(By.CSS_SELECTOR, f'{hook("ledger-row")}[data-kind="redemption"]')
        check(len(ledger) == 1, f"one redemption row, got {len(ledger)}")
        seen["ledger_amount"] = ledger[0].find_element(By.CSS_SELECTOR, hook("ledger-amount")).text.strip()
        seen["wallet_balance"] = find(driver, "balance").text.strip()
        check(driver.find_elements(By.CSS_SELECTOR, hook("topup-amount")), "a top-up field")
        screenshot(driver, "wallet")

        # The price table, at the account's group's prices.
        driver.get(f"{URL}/console/pricing")
        prices = driver.find_elements(By.CSS_SELECTOR, hook("price-row"))
        seen["price_rows"] = {r.get_attribute("data-model"): r.text for r in prices}
        screenshot(driver, "pricing")

        # 简体中文: the switch, remembered on the next page.
        find(driver, "lang-switch").click()
        WebDriverWait(driver, TIMEOUT).until(
            lambda d: d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "zh-CN"
        )
        seen["zh_pricing_title"] = driver.find_element(By.TAG_NAME, "h1").text
        screenshot(driver, "pricing-zh")
        driver.get(f"{URL}/console")
        wait_for(driver, "balance")
        seen["zh_dashboard_title"] = driver.find_element(By.TAG_NAME, "h1").text
        seen["zh_nav"] = driver.find_element(By.TAG_NAME, "nav").text
        screenshot(driver, "dashboard-zh")
        driver.get(f"{URL}/console/usage")
        screenshot(driver, "usage-zh")
    except Exception:
        screenshot(driver, "failure")
        print(driver.page_source[:4000], file=sys.stderr)
        raise
    finally:
        driver.quit()
    print(json.dumps(seen, ensure_ascii=False))
    print("all console checks passed")


if __name__ == "__main__":
    main()
