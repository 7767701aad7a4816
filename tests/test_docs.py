"""The documentation site (``mkdocs.yml``, ``docs/``): it builds with ``--strict`` and
its reference holds every public name of every package (the objects inventory
against each ``__all__``)."""

from __future__ import annotations

import functools
import http.server
import importlib
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parent.parent
PACKAGES = [
    "kepler_async",
    "kepler_async.deepidv",
    "kepler_async.midlyr",
    "kepler_async.parsetx",
    "kepler_async.testing",
]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("mkdocs", reason="the docs extra is not installed")
    built = tmp_path_factory.mktemp("site")
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(built)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return built


def inventory(site: Path) -> set[str]:
    data = (site / "objects.inv").read_bytes()
    body = data.split(b"\n", 4)[4]  # four header lines, then zlib
    return {line.split()[0] for line in zlib.decompress(body).decode().splitlines()}


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_is_in_the_reference(site: Path, package: str) -> None:
    names = inventory(site)
    module = importlib.import_module(package)
    missing = [name for name in module.__all__ if f"{package}.{name}" not in names]
    assert missing == []


def test_the_readme_is_the_landing_page(site: Path) -> None:
    home = (site / "index.html").read_text(encoding="utf-8")
    assert "Quickstart" in home
    assert "Testing your code against the simulator" in home


def test_every_page_is_built_with_its_title(site: Path) -> None:
    docs = ROOT / "docs"
    for page in sorted(docs.rglob("*.md")):
        relative = page.relative_to(docs).with_suffix("")
        built = site / ("index.html" if relative.name == "index" else relative / "index.html")
        assert built.exists(), f"{page} was not built"
        source = page.read_text(encoding="utf-8")
        title = next((line[2:] for line in source.splitlines() if line.startswith("# ")), None)
        if title is not None:  # pages that include a file whole take its title
            assert title in built.read_text(encoding="utf-8"), f"{built} lacks {title!r}"


@pytest.fixture(scope="module")
def served(site: Path) -> Iterator[str]:
    """The built site over HTTP on 127.0.0.1."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium through selenium (Debian's chromium and chromium-driver)."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if binary is None or driver is None:
        pytest.skip("no chromium and chromedriver here (apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.set_capability("goog:loggingOptions", {"browser": "ALL"})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    chrome.set_window_size(1280, 900)
    try:
        yield chrome
    finally:
        chrome.quit()


SECTIONS = [
    "",
    "get-started/",
    "guides/web-services/",
    "guides/testing/",
    "guides/troubleshooting/",
    "explanations/engine/",
    "reference/kepler_async/",
    "reference/cli/",
    "reference/configuration/",
    "performance/",
    "changelog/",
]


def test_the_site_in_a_browser(served: str, browser: Any, site: Path) -> None:
    """The home page renders (a screenshot is kept for a person to look at), a page of
    each section loads with no console error and no broken internal link, and search
    finds ``DeadlineExceeded`` and leads to its reference entry."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as until
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(served + "/")
    assert "kepler_async" in browser.title
    assert browser.find_element(By.CSS_SELECTOR, "h1").text
    shots = ROOT / ".docs-screenshots"
    shots.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(shots / "home.png"))
    print(f"\nthe home page, as a browser shows it: {shots / 'home.png'}")

    checked: set[str] = set()
    for section in SECTIONS:
        browser.get(f"{served}/{section}")
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], (section, errors)
        for link in browser.find_elements(By.CSS_SELECTOR, "a[href]"):
            href = (link.get_attribute("href") or "").split("#")[0]
            if href.startswith(served) and href not in checked:
                checked.add(href)
                with urllib.request.urlopen(href, timeout=10) as reply:
                    assert reply.status == 200, href
    assert len(checked) >= 15  # every page of the navigation, at least

    browser.get(served + "/")
    wait = WebDriverWait(browser, 20)
    box = wait.until(until.element_to_be_clickable((By.CSS_SELECTOR, "input.md-search__input")))
    box.click()
    box.send_keys("DeadlineExceeded")
    # The results are drawn again as each key comes in: find the link in the page
    # itself, once the results hold the class's own reference entry.
    entry = """
        const links = Array.from(document.querySelectorAll('.md-search-result__item a'));
        const hit = links.find(a => a.href.endsWith('#kepler_async.DeadlineExceeded'));
        return hit ? hit.href : null;
    """
    target = wait.until(lambda driver: driver.execute_script(entry))
    browser.get(target)
    heading = browser.find_element(By.ID, "kepler_async.DeadlineExceeded")
    assert "DeadlineExceeded" in heading.text
    assert "/reference/kepler_async/" in target


def test_the_simulator_endpoints_page_lists_every_route() -> None:
    from kepler_async import testing

    page = (ROOT / "docs" / "reference" / "simulator.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `(\w+)` \| (GET|POST) \| `([^`]+)` \|", page, re.M))
    served = set()
    for name in ("KeplerSimulator", "DeepidvSimulator", "MidLyrSimulator", "ParseTxSimulator"):
        app = getattr(testing, name)().create_app()
        for route in app.routes:
            methods = set(getattr(route, "methods", None) or ()) - {"HEAD"}
            served |= {(name, method, route.path) for method in methods}
    assert listed == served


def _expanded(page: Path) -> str:
    """A page's Markdown with its ``--8<--`` includes put in (whole files, or the
    sections between ``[start:name]`` and ``[end:name]`` markers)."""

    def include(match: re.Match[str]) -> str:
        name, _, section = match.group(1).partition(":")
        text = (ROOT / name).read_text(encoding="utf-8")
        if section:
            text = text.split(f"[start:{section}] -->", 1)[1].split(f"<!-- --8<-- [end:{section}]")[
                0
            ]
        return text

    return re.sub(r'^--8<-- "([^"]+)"$', include, page.read_text(encoding="utf-8"), flags=re.M)


def test_every_python_block_on_the_site_is_one_the_readme_test_runs() -> None:
    """The site's pages are made of the README's sections; its Python blocks are the
    README's, which ``tests/test_readme.py`` runs as written. A block written on a
    page of its own would have to be run too: this test says which."""
    blocks = re.compile(r"```python\n(.*?)```", re.S)
    readme = set(blocks.findall((ROOT / "README.md").read_text(encoding="utf-8")))
    for page in sorted((ROOT / "docs").rglob("*.md")):
        for block in blocks.findall(_expanded(page)):
            assert block in readme, f"{page}: a Python block no test runs:\n{block[:200]}"


def test_the_command_line_examples_run_as_written(tmp_path: Path) -> None:
    """The README's (and so the site's) shell examples of ``kepler-async score``, run
    as written in a shell, against the simulator: the key and the origin come from the
    environment, as the example's ``export`` sets them (a real key is not needed)."""
    from kepler_async.testing import LIVE_KEY, KeplerSimulator, create_app, serve

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    [block] = [b for b in re.findall(r"```bash\n(.*?)```", readme, re.S) if "score -f" in b]
    commands = [line for line in block.splitlines() if line and not line.startswith("export ")]
    sim = KeplerSimulator(seed=30, failure_mix={})
    domains = ["stripe.com", "plaid.com", "ramp.com"]
    for domain in domains:
        sim.seed_score(domain, age=60)  # answered at once: no cold run to wait for
    (tmp_path / "domains.txt").write_text("\n".join(domains) + "\n")
    scripts = Path(sys.executable).parent
    with serve(create_app(sim)) as url:
        env = {
            **os.environ,
            "KEPLER_API_KEY": LIVE_KEY,
            "KEPLER_BASE_URL": url,
            "PATH": f"{scripts}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        for command in commands:
            run = subprocess.run(
                command,
                shell=True,
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert run.returncode == 0, (command, run.stderr[-2000:])
    assert (tmp_path / "scores.jsonl").read_text().count("\n") == 3
    assert (tmp_path / "scores.csv").read_text().count("\n") == 4  # a header and 3 rows
    assert (tmp_path / "run.db").exists()
