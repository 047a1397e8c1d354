"""The WebUI in a real headless browser (Debian's chromium and chromium-driver, driven by selenium).

Loads the page from a real gateway, types a sentence, presses Speak, and checks that the page's audio
element ends up with playable audio as long as the gateway's own /api/tts answer for that sentence.
CI installs the browser (.ci/run); where it is missing the test fails under CI and is skipped elsewhere.
Set GATEWAY_WEBUI_SCREENSHOT=path.png to save a screenshot of the page after synthesis.
"""

from __future__ import annotations

import io
import os
import shutil

import httpx
import pytest
import soundfile as sf

pytestmark = pytest.mark.server

SENTENCE = "北京欢迎你，今天天气很好。"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--autoplay-policy=no-user-gesture-required", "--window-size=1000,620"]
WAIT_S = 60


@pytest.fixture
def browser(tmp_path):
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver):
        message = "chromium and chromedriver are needed: apt-get install -y chromium chromium-driver"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    try:
        yield driver
    finally:
        driver.quit()


def test_type_press_speak_and_get_playable_audio_of_the_right_length(browser, gateway_process):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    expected = httpx.post(gateway_process.url + "/api/tts", json={"text": SENTENCE}, timeout=120)
    expected_s = sf.info(io.BytesIO(expected.content)).frames / 16000

    browser.get(gateway_process.url + "/")
    wait = WebDriverWait(browser, WAIT_S)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#voice option"))
    assert browser.find_element(By.ID, "voice").get_attribute("value") == "zhitian_emo"
    assert "happy" in [o.text for o in browser.find_elements(By.CSS_SELECTOR, "#emotion option")]

    # A mistake shows the gateway's message on the page.
    text_box = browser.find_element(By.ID, "text")
    text_box.clear()
    browser.find_element(By.ID, "speak").click()
    wait.until(lambda d: "'text' is empty" in d.find_element(By.ID, "status").text)

    text_box.send_keys(SENTENCE)
    browser.find_element(By.ID, "speak").click()
    wait.until(lambda d: "s of audio" in d.find_element(By.ID, "status").text)
    wait.until(lambda d: d.execute_script("return document.getElementById('player').readyState >= 1"))

    duration = browser.execute_script("return document.getElementById('player').duration")
    assert duration == pytest.approx(expected_s, abs=0.01)
    assert browser.execute_script("return document.getElementById('player').error") is None
    played = browser.execute_async_script(
        "const done = arguments[0]; document.getElementById('player').play()"
        ".then(() => done('playing'), (e) => done(e.name + ': ' + e.message));")
    assert played == "playing"
    download = browser.find_element(By.ID, "download")
    assert download.is_displayed() and download.get_attribute("href").startswith("blob:")

    if os.environ.get("GATEWAY_WEBUI_SCREENSHOT"):
        browser.execute_script("document.getElementById('player').pause()")
        browser.save_screenshot(os.environ["GATEWAY_WEBUI_SCREENSHOT"])
