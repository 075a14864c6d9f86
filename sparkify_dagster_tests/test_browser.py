"""The Dagster UI as an operator sees it, in headless Chromium (slow).

A fresh instance (DAGSTER_HOME in a temp folder, with deploy/dagster.yaml) and a fresh DuckDB file:
``dagster asset materialize --select '*'`` records every materialization in that instance (then
``plays_by_platform``'s is wiped, so one table has never been materialized), ``dagster-webserver``
serves it on 127.0.0.1, and ``dagster-daemon`` evaluates freshness (the sensor is stopped first, so
it starts no run behind the test's back). The browser checks the lineage (every asset name in the global graph), an analytics
asset's overview (row count, owners, kinds, code references), its chart (an image decoded by the
browser, 600 x 300), the latest materialization's metadata, the columns of the never-materialized
table, ``songplays``' column lineage (the lineage graph's side panel), its freshness status and an
analytics table's check results. Screenshots go to test-artifacts/.

Needs Python playwright (``pip install playwright``; its own browser download is NOT used) and
Debian's Chromium (``apt-get install -y chromium``); skipped with the reason when either is missing.
``SPARKIFY_UPDATE_DOCS=1`` also rewrites docs/lineage.png from the lineage screenshot.
"""

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from sparkify_dagster.assets.analytics import ANALYSES
from sparkify_dagster.assets.charts import HEIGHT_PX, WIDTH_PX

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
BIN = Path(sys.executable).parent
CHROMIUM = os.environ.get("SPARKIFY_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ASSETS = ["song_data", "log_data", "staging_events", "staging_songs", "users", "songs", "artists", "songplays",
          "time", *(a.name for a in ANALYSES)]
UI_TIMEOUT_MS = 60_000
NEVER_MATERIALIZED = "plays_by_platform"

# Until definitions.py wires the analytics assets in, the test serves the same graph through this file.
WIRING_SHIM = '''
import dagster as dg

from sparkify_dagster.assets.analytics import build_analytics_assets
from sparkify_dagster.definitions import build_defs


def _wired():
    base = build_defs()
    return dg.Definitions(
        assets=dg.with_source_code_references([*base.assets, build_analytics_assets(base.resources["warehouse"].kind)]),
        asset_checks=base.asset_checks, jobs=base.jobs, sensors=base.sensors, schedules=base.schedules,
        resources=base.resources, executor=base.executor,
    )


defs = _wired()
'''


def _browser_or_skip():
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("Python playwright is not installed (pip install playwright; no `playwright install` needed)")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium, or set SPARKIFY_CHROMIUM)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _code_location_args(tmp: Path) -> list[str]:
    from sparkify_dagster import defs

    if any(k.to_user_string() == "top_songs" for k in defs().resolve_asset_graph().get_all_asset_keys()):
        return ["-m", "sparkify_dagster"]
    shim = tmp / "wired_defs.py"
    shim.write_text(WIRING_SHIM)
    return ["-f", str(shim), "-d", str(REPO)]


@pytest.fixture(scope="module")
def webserver(tmp_path_factory):
    """A materialized warehouse and instance, served by dagster-webserver; yields its base URL."""
    _browser_or_skip()
    tmp = tmp_path_factory.mktemp("browser")
    home = tmp / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARKIFY_", "DAGSTER_"))}
    env.update(DAGSTER_HOME=str(home), SPARKIFY_DUCKDB_PATH=str(tmp / "wh.duckdb"))
    location = _code_location_args(tmp)

    for command in (["asset", "materialize", *location, "--select", "*"],
                    ["asset", "wipe", NEVER_MATERIALIZED, "--noprompt"],
                    ["sensor", "stop", *location, "new_raw_files"]):
        done = subprocess.run([str(BIN / "dagster"), *command], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    daemon_log = open(tmp / "daemon.log", "w")
    daemon = subprocess.Popen([str(BIN / "dagster-daemon"), "run", *location], cwd=REPO,
                              env={**env, "FRESHNESS_DAEMON_INTERVAL_SECONDS": "3"}, stdout=daemon_log,
                              stderr=subprocess.STDOUT)

    port = _free_port()
    log = open(tmp / "webserver.log", "w")
    server = subprocess.Popen([str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), *location],
                              cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/server_info", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"dagster-webserver did not start:\n{(tmp / 'webserver.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield base
    finally:
        for process in (server, daemon):
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()
        daemon_log.close()


@pytest.fixture(scope="module")
def browser(webserver):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    expect.set_options(timeout=UI_TIMEOUT_MS)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = chromium.new_context(viewport={"width": 1500, "height": 950})
        context.set_default_timeout(UI_TIMEOUT_MS)
        _skip_community_dialog(context, webserver)
        yield context
        context.close()
        chromium.close()


def _skip_community_dialog(context, base):
    """A fresh instance greets the first visit from 127.0.0.1 with "Join the Dagster community": Skip.

    Skipping marks it seen in the instance and in the browser's storage, so later pages go without.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout, expect

    page = context.new_page()
    page.goto(f"{base}/overview")
    dialog = page.get_by_text("Join the Dagster community")
    try:
        dialog.wait_for(state="visible", timeout=20_000)
    except PlaywrightTimeout:  # a Dagster version without it, or an instance that has seen it
        page.close()
        return
    page.screenshot(path=str(ARTIFACTS / "community-dialog.png"))
    page.get_by_role("button", name="Skip").click()
    expect(dialog).to_be_hidden()
    page.close()


@pytest.fixture
def page(browser):
    page = browser.new_page()
    # Should the community dialog show up again, Skip it (Playwright runs this handler before any
    # action or assertion that the dialog would block).
    page.add_locator_handler(page.get_by_text("Join the Dagster community"),
                             lambda _: page.get_by_role("button", name="Skip").click())
    yield page
    page.close()


def test_lineage_shows_every_asset_from_raw_to_analytics(webserver, page):
    from playwright.sync_api import expect

    page.goto(f"{webserver}/asset-groups")
    expect(page.get_by_text("Global asset lineage")).to_be_visible()
    graph = page.locator("svg[class*=svgContainer]")
    for group in ("raw", "staging", "star", "analytics"):
        expect(graph.get_by_text(group, exact=True).first).to_be_visible()
    page.wait_for_timeout(1000)  # let the first layout settle before expanding
    page.keyboard.press("Alt+KeyE")  # the graph's own shortcut: expand all groups
    for name in ASSETS:
        expect(graph.locator("foreignObject").get_by_text(name, exact=True)).to_be_visible()
    page.wait_for_load_state("networkidle")  # asset statuses arrive in batches after the layout
    page.wait_for_timeout(1500)  # and the graph animates into its fitted position
    page.screenshot(path=str(ARTIFACTS / "lineage-page.png"))
    # The picture for the README: the graph alone, without the zoom and settings controls over it.
    page.add_style_tag(content="[class*=zoomSliderContainer], button { visibility: hidden !important; }")
    clip = _union_box(graph.locator("foreignObject").all(), page.viewport_size, pad=12)
    page.screenshot(path=str(ARTIFACTS / "lineage.png"), clip=clip)
    if os.environ.get("SPARKIFY_UPDATE_DOCS") == "1":
        shutil.copy(ARTIFACTS / "lineage.png", REPO / "docs" / "lineage.png")


def _union_box(locators, viewport, pad):
    boxes = [b for b in (loc.bounding_box() for loc in locators) if b]
    x0 = max(min(b["x"] for b in boxes) - pad, 0)
    y0 = max(min(b["y"] for b in boxes) - pad, 0)
    x1 = min(max(b["x"] + b["width"] for b in boxes) + pad, viewport["width"])
    y1 = min(max(b["y"] + b["height"] for b in boxes) + pad, viewport["height"])
    return {"x": x0, "y": y0, "width": x1 - x0, "height": y1 - y0}


def test_analytics_asset_overview_shows_row_count_owners_code_and_its_chart(webserver, page):
    from playwright.sync_api import expect

    page.goto(f"{webserver}/assets/top_songs")
    expect(page.get_by_text("Latest materialization")).to_be_visible()
    row_count = page.get_by_text("Row count", exact=True).locator("xpath=..")
    expect(row_count).to_contain_text("10")
    for text in ("The 10 most played songs", "data-engineering", "DuckDB", "pillow"):
        expect(page.get_by_text(text).first).to_be_visible()
    source_code = page.get_by_text("Source code", exact=True).locator("xpath=..")
    for text in ("analytics_top_songs.sql", "charts.py", "analytics.py"):  # code references
        expect(source_code).to_contain_text(text)
    page.screenshot(path=str(ARTIFACTS / "top_songs-overview.png"), full_page=True)

    page.locator("tr", has_text="chart").get_by_text("[Show Markdown]").click()
    chart = page.get_by_role("dialog").locator("img[src^='data:image/png;base64,']")
    expect(chart).to_be_visible()
    chart.evaluate("img => img.decode()")  # resolves only once the browser has decoded the PNG
    assert chart.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [WIDTH_PX, HEIGHT_PX]
    assert chart.get_attribute("alt") == "Top 10 songs by plays"
    page.wait_for_timeout(500)  # the dialog fades in
    page.screenshot(path=str(ARTIFACTS / "top_songs-chart.png"))


def test_latest_materialization_lists_its_metadata(webserver, page):
    from playwright.sync_api import expect

    page.goto(f"{webserver}/assets/plays_by_hour?view=events")
    expect(page.get_by_text("Materialized in run")).to_be_visible()
    metadata = page.locator("table", has_text="dagster/row_count").first
    expect(metadata.locator("tr", has_text="dagster/row_count")).to_contain_text("24")
    expect(metadata.get_by_text("wh.analytics.plays_by_hour")).to_be_visible()
    expect(metadata.get_by_text("Hour of day, 0-23, UTC.")).to_be_visible()  # column descriptions
    expect(metadata.locator("tr", has_text="preview")).to_contain_text("listeners")  # the preview table
    page.screenshot(path=str(ARTIFACTS / "plays_by_hour-events.png"), full_page=True)
    metadata.locator("tr", has_text="chart").get_by_text("[Show Markdown]").click()
    chart = page.get_by_role("dialog").locator("img[src^='data:image/png;base64,']")
    expect(chart).to_be_visible()
    chart.evaluate("img => img.decode()")
    assert chart.evaluate("img => img.naturalWidth") == WIDTH_PX
    page.wait_for_timeout(500)  # the dialog fades in
    page.screenshot(path=str(ARTIFACTS / "plays_by_hour-chart.png"))


def test_staging_materialization_has_a_preview(webserver, page):
    from playwright.sync_api import expect

    page.goto(f"{webserver}/assets/staging_events?view=events")
    expect(page.get_by_text("Materialized in run")).to_be_visible()
    expect(page.locator("tr", has_text="records_staged").last).to_be_visible()
    preview = _markdown_value(page, page.locator("tr", has_text="preview").last)
    expect(preview).to_contain_text("source_file")
    expect(preview).to_contain_text("log_data/2018/11/")
    page.wait_for_timeout(500)  # a dialog fades in
    page.screenshot(path=str(ARTIFACTS / "staging_events-preview.png"))


def _markdown_value(page, row):
    """Where a markdown metadata value is rendered: inline when short, else behind [Show Markdown]."""
    button = row.get_by_text("[Show Markdown]")
    if button.count():
        button.click()
        return page.get_by_role("dialog")
    return row


def test_a_never_materialized_table_shows_its_columns(webserver, page):
    from playwright.sync_api import expect

    from sparkify_dagster.catalog import TABLES

    page.goto(f"{webserver}/assets/{NEVER_MATERIALIZED}")
    expect(page.get_by_text("Never materialized").first).to_be_visible()
    for column in TABLES[NEVER_MATERIALIZED].columns:  # from the definition: no run has reported them
        expect(page.get_by_text(column.description, exact=True).first).to_be_visible()
    expect(page.get_by_text("share_pct", exact=True).first).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / f"{NEVER_MATERIALIZED}-columns.png"), full_page=True)


def test_songplays_column_lineage_reaches_the_staging_columns(webserver, page):
    # Dagster OSS has no column-lineage graph (its Lineage tab's column view and the schema table's
    # lineage links are Dagster+ features: AssetFeatureContext leaves them empty); what it shows is
    # the definition's dagster/column_lineage in the lineage graph's sidebar, behind [Show JSON].
    from playwright.sync_api import expect

    page.goto(f"{webserver}/asset-groups/songplays")  # the global graph with songplays selected
    row = page.locator("tr", has_text="dagster/column_lineage")
    row.get_by_text("[Show JSON]").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("start_time")
    page.wait_for_timeout(500)  # the dialog fades in
    page.screenshot(path=str(ARTIFACTS / "songplays-column-lineage.png"))
    text = dialog.inner_text()  # "dagster/column_lineage", the JSON, then the Copy and Close buttons
    shown = json.loads(text[text.index("["):text.rindex("]") + 1])
    shown = {e["columnName"]: {("/".join(d["assetKey"]["path"]), d["columnName"]) for d in e["columnDeps"]}
             for e in shown}
    assert shown["start_time"] == {("staging_events", "ts")}  # start_time is made from staging_events.ts
    assert shown == _defined_column_lineage("songplays")  # and the rest is what the definition derives


def _defined_column_lineage(asset: str) -> dict[str, set[tuple[str, str]]]:
    """The dagster/column_lineage of an asset's definition, as the test's own process loads it."""
    import dagster as dg

    from sparkify_dagster import defs

    lineage = defs().resolve_asset_graph().get(dg.AssetKey(asset)).metadata["dagster/column_lineage"]
    return {column: {(dep.asset_key.to_user_string(), dep.column_name) for dep in deps}
            for column, deps in lineage.deps_by_column.items()}


def test_a_fresh_table_shows_its_freshness_state(webserver, page):
    from playwright.sync_api import expect

    from sparkify_dagster.definitions import DEFAULT_FRESHNESS_HOURS, DEFAULT_FRESHNESS_WARN_HOURS

    # Materialized minutes ago, within the 26 h window: the freshness daemon records PASS, which the
    # asset's status shows as "Passing". The page reads the state once, so reload until the daemon's
    # first evaluation (every 3 s here) has landed.
    status = page.get_by_text("Freshness policy", exact=True).first.locator("xpath=..")
    deadline = time.monotonic() + 90
    while True:
        page.goto(f"{webserver}/assets/songplays")
        try:
            expect(status).to_contain_text("Passing", timeout=10_000)
            break
        except AssertionError:
            assert time.monotonic() < deadline, f"no freshness state on the page within 90 s: {status.all_inner_texts()}"
    # The policy itself, from the definition, in the side panel.
    for verb, hours in (("Fails", DEFAULT_FRESHNESS_HOURS), ("Warns", DEFAULT_FRESHNESS_WARN_HOURS)):
        expect(page.get_by_text(f"{verb} if more than {hours:g} hours since last materialization")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "songplays-freshness.png"), full_page=True)


def test_an_analytics_check_result_is_shown(webserver, page):
    from playwright.sync_api import expect

    page.goto(f"{webserver}/assets/plays_by_hour?view=checks")
    expect(page.get_by_text("Checks (2)")).to_be_visible()
    for check in ("one_row_per_hour", "plays_add_up_to_songplays"):  # each with its latest result
        expect(page.get_by_text(check, exact=True).first).to_be_visible()
    expect(page.get_by_text("Succeeded").first).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "plays_by_hour-checks.png"), full_page=True)
