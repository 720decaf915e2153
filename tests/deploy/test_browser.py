"""End to end as a person uses it: the server on 127.0.0.1 (a uvicorn thread, always stopped), Debian's Chromium
headless through Selenium, a real photo (scikit-image's Chelsea the cat) uploaded through the page; the shown
top-1 must be the predictor's and the Grad-CAM overlay must have rendered. Saves a screenshot."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.deploy.test_export_detect import scene_images, sure_of_itself
from tests.detection.conftest import det_scenes, yolo_run  # noqa: F401 - shared fixtures

from .conftest import served

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; make install does it"
    " as root)",
)
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic", "--window-size=1200,1000")  # fmt: skip


@pytest.fixture
def server():
    """The Lite0 page served by uvicorn on a free loopback port, in a thread stopped after the test."""
    from cnnkit.deploy import load_predictor
    from cnnkit.deploy.serve import create_app

    predictor = load_predictor(model="efficientnet_lite0", pretrained=True)
    with served(create_app(predictor)) as port:
        yield f"http://127.0.0.1:{port}/", predictor


@contextlib.contextmanager
def chromium(tmp_path: Path) -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Selenium; always quit."""
    from selenium import webdriver

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=DRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def upload(driver: Any, url: str, image: Path, overlay_width: int) -> None:
    """Open the page, pick ``image``, and wait for the answer and for the overlay, ``overlay_width`` pixels wide."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    driver.find_element(By.ID, "file").send_keys(str(image))
    WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.ID, "top1-label"))
    js = "const i = document.getElementById('overlay'); return i.complete ? i.naturalWidth : 0"
    WebDriverWait(driver, 10).until(lambda d: d.execute_script(js) == overlay_width)


def test_upload_a_photo_and_see_top1_and_the_overlay(server, tmp_path):
    from selenium.webdriver.common.by import By
    from skimage import data

    url, predictor = server
    photo = tmp_path / "chelsea.png"
    Image.fromarray(data.chelsea()).save(photo)
    want = predictor.predict([photo], topk=1)[0].label  # the predictor's own answer, not a copied string
    with chromium(tmp_path) as driver:
        upload(driver, url, photo, 224)  # Lite0's 224×224 Grad-CAM view
        assert driver.find_element(By.ID, "top1-label").text == want
        assert len(driver.find_elements(By.CSS_SELECTOR, "#bars .bar")) == 5
        shot = tmp_path / "serve_page.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        if os.environ.get("CNNKIT_SCREENSHOT"):  # e.g. docs/images/serve_page.png for the README
            shutil.copy(shot, os.environ["CNNKIT_SCREENSHOT"])


def test_a_detectors_page_lists_the_objects_and_draws_their_boxes(yolo_run, det_scenes, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By

    from cnnkit.deploy import load_predictor
    from cnnkit.deploy.serve import create_app

    images = scene_images(det_scenes)
    predictor = load_predictor(sure_of_itself(yolo_run, tmp_path / "sure", images))
    image, want = next((im, p.objects) for im, p in zip(images, predictor.predict(images)) if p.objects)
    with served(create_app(predictor)) as port, chromium(tmp_path) as driver:
        upload(driver, f"http://127.0.0.1:{port}/", image, 256)  # the 32×32 scene with its boxes, drawn 8× larger
        assert driver.find_element(By.ID, "results-title").text == f"Objects found ({len(want)})"
        assert driver.find_element(By.ID, "top1-label").text == want[0].label
        assert len(driver.find_elements(By.CSS_SELECTOR, "#bars .bar")) == len(want)
