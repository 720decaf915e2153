"""``cnnkit report RUN`` / ``write_report``: report.html and report.md with real PNG plots and class names."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from PIL import Image

from cnnkit.evaluate.report import write_report

PLOTS = ("curves.png", "confusion.png", "top_losses.png", "units_stem.0.png", "units_stage2.1.png")  # units: smallcnn


def _linked_images(text: str, pattern: str) -> list[str]:
    return re.findall(pattern, text)


def test_report_command_writes_html_markdown_and_pngs(cli, folder_run, tmp_path):
    run = Path(shutil.copytree(folder_run, tmp_path / "run"))
    code, out, _ = cli("report", run)
    assert code == 0 and "report.html" in out
    html, md = (run / "report.html").read_text(), (run / "report.md").read_text()
    assert sorted(_linked_images(html, r'<img src="([^"]+)"')) == sorted(f"report_files/{p}" for p in PLOTS)
    assert sorted(_linked_images(md, r"!\[[^\]]*\]\(([^)]+)\)")) == sorted(f"report_files/{p}" for p in PLOTS)
    for name in PLOTS:
        with Image.open(run / "report_files" / name) as im:
            assert im.format == "PNG" and im.width > 300 and im.height > 150
            im.verify()
    for text in (html, md):  # class names, not indices; the run's configuration
        assert "<td>cat</td>" in text or "| cat |" in text
        assert "Per-class results" in text and "Top losses" in text and "name: smallcnn" in text
    assert "<!DOCTYPE html>" in html and "</html>" in html


def test_report_without_history_still_written(digits_run, tmp_path):
    run = Path(shutil.copytree(digits_run, tmp_path / "run"))
    (run / "history.csv").unlink()
    path = write_report(run)
    assert path == run / "report.html" and (run / "report.md").exists()
    assert "No history.csv" in path.read_text() and not (run / "report_files" / "curves.png").exists()
    assert "| weighted average |" in (run / "report.md").read_text()
