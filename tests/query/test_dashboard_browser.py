"""The dashboard in a real headless Chromium against the real app under uvicorn on chDB: sign in
with a token (typed, or from a link's fragment), look a customer up by source_id, filter, scroll
for more, see a new event arrive live, read the tenant overview's exact numbers from the DOM;
another tenant's token sees none of it, and a tenant token never asks for the admin-only status.
Screenshots of both pages go to tests/artifacts/ (the README's come from there)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from query.api.app import create_app
from query.store import Store
from tests.conftest import unique_name
from tests.query.analytics_dataset import (
    GIFT,
    LOYALTY,
    MONDAY,
    SPRING,
    Seeded,
    dave_event,
    seed,
)
from tests.query.conftest import TOKENS, write
from tests.query.served import served

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
# The system's Chromium (./dev installs it as root); otherwise the one `playwright install` fetched.
CHROMIUM = shutil.which("chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
VIEWPORT = {"width": 1200, "height": 900}


@pytest.fixture(scope="module")
def seeded(chdb_path: Path) -> Iterator[Seeded]:
    with Store.open(f"chdb://{chdb_path}?database={unique_name('dashboard')}") as store:
        yield seed(store)


@pytest.fixture(scope="module")
def base_url(seeded: Seeded) -> Iterator[str]:
    with served(create_app(seeded.store, tokens=TOKENS)) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    # A fresh context per test: its own sessionStorage, so no token leaks between tests.
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(10_000)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert errors == []


def sign_in(page: Page, url: str, token: str, tenant: str = "") -> None:
    page.goto(url)
    page.fill("#tenant", tenant)
    page.fill("#token", token)
    page.click("#signin button[type=submit]")
    expect(page.get_by_test_id("signed-in")).to_be_visible()


def one_line_inside_its_card(page: Page, selector: str) -> bool:
    return page.locator(selector).evaluate("""dd => {
        const box = dd.getBoundingClientRect(), card = dd.closest('.card').getBoundingClientRect();
        return box.height < 1.5 * parseFloat(getComputedStyle(dd).lineHeight) && box.right <= card.right;
    }""")


def timeline_ids(page: Page) -> list[str]:
    return page.locator("#timeline > li").evaluate_all("items => items.map(item => item.dataset.id)")


def look_up(page: Page, key: str) -> None:
    page.fill("#customer", key)
    page.click("#lookup button[type=submit]")


def test_timeline_and_overview(page: Page, base_url: str, seeded: Seeded) -> None:
    sign_in(page, f"{base_url}/dashboard?refresh=1", "acme-token")
    # The token survives a reload of the tab (sessionStorage), so it is entered once.
    page.reload()
    # The token alone names its tenant: the header shows the tenant's name.
    expect(page.get_by_test_id("signed-in")).to_have_text("acme")

    history = [str(event.id) for event in seeded.newest_first(seeded.dave)]
    look_up(page, "dave-src")
    expect(page.locator("#timeline > li")).to_have_count(20)
    assert timeline_ids(page) == history[:20]
    expect(page.locator("#customer-source-id")).to_have_text("dave-src")
    newest = page.locator("#timeline > li").first
    # Dave's 30th event (number 29): a Spring Sale redemption with voucher CODE-029, amount 1029.
    expect(newest.locator(".type")).to_have_text("customer.redemption.succeeded")
    expect(newest.locator("time")).to_have_text("2024-03-06 13:30:00 UTC")
    expect(newest.locator(".campaign")).to_have_text("Spring Sale · DISCOUNT_COUPONS")
    expect(newest.locator("dl.fields")).to_contain_text("CODE-029")
    expect(newest.locator("dl.fields")).to_contain_text("1029")

    # Infinite scroll: bringing the end of the list into view loads the next page.
    page.locator("#more").scroll_into_view_if_needed()
    expect(page.locator("#timeline > li")).to_have_count(30)
    assert timeline_ids(page) == history
    expect(page.locator("#more")).to_have_attribute("data-state", "end")

    page.select_option("#filter-type", "customer.redemption.succeeded")
    page.click("#filters button[type=submit]")
    redemptions = [str(event.id) for event in seeded.newest_first(seeded.dave)
                   if event.type == "customer.redemption.succeeded"]
    expect(page.locator("#timeline > li")).to_have_count(len(redemptions))
    assert timeline_ids(page) == redemptions and len(redemptions) == 9
    page.select_option("#filter-campaign", str(SPRING[0]))
    page.click("#filters button[type=submit]")
    expect(page.locator("#timeline > li")).to_have_count(5)
    page.click("#filters button[type=reset]")
    expect(page.locator("#timeline > li")).to_have_count(20)

    # Live: an event written now appears on top without a reload.
    arrived = dave_event(seeded.acme, seeded.dave, 30, at=MONDAY + timedelta(days=2, hours=14))
    write(seeded.store, [arrived], lsn=3)
    expect(page.locator("#timeline > li").first).to_have_attribute("data-id", str(arrived.id), timeout=8_000)
    expect(page.locator("#timeline > li.fresh")).to_have_count(1)
    page.screenshot(path=ARTIFACTS / "dashboard-timeline.png")

    page.click("nav >> text=Tenant overview")
    expect(page.locator("body")).to_have_attribute("data-loaded", "true")
    days = page.locator("#events-per-day g.day").evaluate_all(
        "days => days.map(day => [day.dataset.date, Number(day.dataset.total)])")
    # 30 + 1 of dave's (the live one on Wednesday), erin's on Monday, Wednesday and Friday,
    # erin's and frank's three on Tuesday and on Wednesday evening.
    assert days == [["2024-03-04", 11], ["2024-03-05", 13], ["2024-03-06", 15], ["2024-03-07", 0],
                    ["2024-03-08", 1]]
    expect(page.locator("#total-events")).to_have_text("40")
    monday = page.locator("#events-per-day g.day[data-date='2024-03-04'] rect.segment").evaluate_all(
        "rects => Object.fromEntries(rects.map(rect => [rect.dataset.type, Number(rect.dataset.count)]))")
    assert monday == {"customer.order.paid": 2, "customer.publication.succeeded": 3,
                      "customer.redemption.rollback.succeeded": 1, "customer.redemption.succeeded": 3,
                      "customer.segment.entered": 1, "customer.segment.left": 1}
    busy = page.locator("#heatmap rect.cell:not([data-count='0'])").evaluate_all(
        "cells => cells.map(cell => [cell.dataset.weekday, Number(cell.dataset.hour), Number(cell.dataset.count)])")
    assert sum(count for _, _, count in busy) == 40
    assert ["Mon", 9, 2] in busy and ["Wed", 14, 1] in busy and ["Fri", 18, 1] in busy
    # Distinct customers per stage (dave's five publications of the Spring Sale are one customer),
    # and the Gift Cards' generic codes read as redemptions without a publication stage.
    funnel = page.locator("#funnel g.campaign").evaluate_all(
        "groups => groups.map(g => [g.dataset.campaignId, +g.dataset.published, +g.dataset.redeemed, +g.dataset.rolledBack])")
    assert funnel == [[str(SPRING[0]), 2, 2, 1], [str(LOYALTY[0]), 1, 1, 0], [str(GIFT[0]), 0, 2, 1]]
    expect(page.locator("#funnel-hint")).to_contain_text("Distinct customers at each stage")
    spring = page.locator(f"#funnel g.campaign[data-campaign-id='{SPRING[0]}'] text.number")
    expect(spring).to_have_text(["2", "2 · 1 of 2 published (50%)", "1 (50% of redeemers)"])
    gift = page.locator("#funnel g.campaign.generic-codes")
    expect(gift.locator(".campaign-name")).to_have_text("Gift Cards · GIFT_VOUCHERS")
    expect(gift.locator("text.number")).to_have_text(["none: generic codes", "2", "1 (50% of redeemers)"])
    shares = page.locator("#funnel text.number").evaluate_all(
        "texts => texts.flatMap(t => [...t.textContent.matchAll(/(\\d+)%/g)].map(m => Number(m[1])))")
    assert shares and max(shares) <= 100
    top = page.locator("#top-customers tbody tr").evaluate_all(
        "rows => rows.map(row => [row.querySelector('a').textContent, Number(row.dataset.events)])")
    assert top == [["dave-src", 31], ["erin-src", 5], ["frank-src", 4]]
    expect(page.locator("#lag-events")).to_have_text("40")
    # "last stored" reads on one line inside its card.
    assert one_line_inside_its_card(page, "#lag-last")
    page.screenshot(path=ARTIFACTS / "dashboard-overview.png", full_page=True)

    # A top customer links back to its timeline.
    page.click("#top-customers a >> text=erin-src")
    expect(page.locator("#timeline > li")).to_have_count(5)
    expect(page.locator("#customer-source-id")).to_have_text("erin-src")


def test_another_tenant_sees_none_of_it(page: Page, base_url: str, seeded: Seeded) -> None:
    sign_in(page, f"{base_url}/dashboard", "globex-token", tenant="globex")
    expect(page.get_by_test_id("signed-in")).to_have_text("globex")
    for key in ("dave-src", str(seeded.dave.id)):
        look_up(page, key)
        expect(page.locator("#message")).to_have_text(f"no customer with id or source_id '{key}'.")
        expect(page.locator("#timeline > li")).to_have_count(0)
    look_up(page, "gina-src")
    expect(page.locator("#timeline > li")).to_have_count(2)

    page.goto(f"{base_url}/dashboard/overview")
    expect(page.locator("body")).to_have_attribute("data-loaded", "true")
    expect(page.locator("#total-events")).to_have_text("2")
    assert page.locator("#events-per-day g.day").evaluate_all(
        "days => days.map(day => [day.dataset.date, Number(day.dataset.total)])") == [["2024-03-05", 2]]
    expect(page.locator("#funnel")).to_have_text("No publications, redemptions or rollbacks.")
    expect(page.locator("#top-customers tbody tr")).to_have_count(1)
    expect(page.locator("#top-customers tbody")).to_contain_text("gina-src")
    expect(page.locator("main")).not_to_contain_text("dave-src")


def test_a_token_for_another_tenant_is_refused(page: Page, base_url: str) -> None:
    # Checked at sign-in: the form says why and keeps nothing.
    page.goto(f"{base_url}/dashboard/overview")
    page.fill("#tenant", "globex")
    page.fill("#token", "acme-token")
    page.click("#signin button[type=submit]")
    expect(page.locator("#signin .signin-error")).to_have_text("this token does not grant access to tenant 'globex'.")
    expect(page.locator("#events-per-day svg")).to_have_count(0)
    assert page.evaluate("sessionStorage.length") == 0


def watch_network(page: Page) -> tuple[list[str], list[tuple[int, str]], list[str]]:
    """Every URL the page requests, every response of 400 or more, every console error."""
    requested: list[str] = []
    failed: list[tuple[int, str]] = []
    console_errors: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("response", lambda response: failed.append((response.status, response.url))
            if response.status >= 400 else None)
    page.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else None)
    return requested, failed, console_errors


def test_a_link_signs_in_with_the_token_in_its_fragment(page: Page, base_url: str) -> None:
    requested, failed, console_errors = watch_network(page)
    page.goto(f"{base_url}/dashboard/overview#token=admin-token&tenant=acme")
    expect(page.get_by_test_id("signed-in")).to_have_text("acmeadmin")
    expect(page.locator("body")).to_have_attribute("data-loaded", "true")
    # The fragment is gone from the address bar, and the token never travelled in a URL.
    assert page.url == f"{base_url}/dashboard/overview"
    assert page.evaluate("window.location.hash") == ""
    assert not [url for url in requested if "admin-token" in url]
    # An admin token reads the reader's status.
    assert f"{base_url}/v1/status" in requested
    expect(page.locator("#reader-lag-seconds")).to_be_visible()
    expect(page.locator("#total-events")).to_have_text("40")
    assert (failed, console_errors) == ([], [])
    # The tab keeps it: the timeline opens signed in.
    page.click("nav >> text=Customer timeline")
    expect(page.get_by_test_id("signed-in")).to_have_text("acmeadmin")


def test_a_link_with_a_wrong_token_asks_again(page: Page, base_url: str) -> None:
    page.goto(f"{base_url}/dashboard#token=nope&tenant=acme")
    expect(page.locator("#signin .signin-error")).to_have_text("the token is not valid.")
    expect(page.locator("#signed-out-hint")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0
    assert page.url == f"{base_url}/dashboard"


def test_signed_out_pages_say_how_to_sign_in(page: Page, base_url: str) -> None:
    for path in ("/dashboard", "/dashboard/overview"):
        page.goto(f"{base_url}{path}")
        expect(page.locator("#signed-out-hint")).to_have_text(
            "Sign in above with an API token (an admin token needs the tenant's name); "
            "the demo prints a Dashboard link that signs in at once.")
    sign_in(page, f"{base_url}/dashboard", "acme-token")
    expect(page.locator("#signed-out-hint")).to_be_hidden()


def test_a_tenant_token_never_asks_for_the_status(page: Page, base_url: str) -> None:
    requested, failed, console_errors = watch_network(page)
    sign_in(page, f"{base_url}/dashboard/overview", "acme-token", tenant="acme")
    expect(page.locator("body")).to_have_attribute("data-loaded", "true")
    assert not [url for url in requested if url.startswith(f"{base_url}/v1/status")]
    expect(page.locator("#reader-lag")).to_have_text(
        "The reader's replication lag and retained WAL are shared by every tenant: an admin token reads "
        "them, a tenant token reads its own events only.")
    # Nothing on the page is missing: no 404 (the icon included), no 403, no console error.
    icon = page.evaluate("fetch(document.querySelector('link[rel=icon]').href).then(r => [r.status, r.headers.get('content-type')])")
    assert icon == [200, "image/svg+xml"]
    assert (failed, console_errors) == ([], [])


@pytest.mark.parametrize("width", [1200, 1000, 760])
def test_the_overview_cards_never_split_a_time(browser: Browser, base_url: str, width: int) -> None:
    context = browser.new_context(viewport={"width": width, "height": 900})
    try:
        page = context.new_page()
        sign_in(page, f"{base_url}/dashboard/overview", "acme-token")
        expect(page.locator("body")).to_have_attribute("data-loaded", "true")
        for selector in ("#lag-last", "#lag-p50", "#lag-events"):
            assert one_line_inside_its_card(page, selector), (width, selector)
    finally:
        context.close()
