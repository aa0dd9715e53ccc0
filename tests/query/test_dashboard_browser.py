"""The dashboard in a real headless Chromium against the real app under uvicorn on chDB: sign in
with a token, look a customer up by source_id, filter, scroll for more, see a new event arrive
live, read the tenant overview's exact numbers from the DOM; another tenant's token sees none
of it. Screenshots of both pages go to tests/artifacts/ (the README's come from there)."""

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
from tests.query.analytics_dataset import MONDAY, SPRING, Seeded, dave_event, seed
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


def timeline_ids(page: Page) -> list[str]:
    return page.locator("#timeline > li").evaluate_all("items => items.map(item => item.dataset.id)")


def look_up(page: Page, key: str) -> None:
    page.fill("#customer", key)
    page.click("#lookup button[type=submit]")


def test_timeline_and_overview(page: Page, base_url: str, seeded: Seeded) -> None:
    sign_in(page, f"{base_url}/dashboard?refresh=1", "acme-token")
    # The token survives a reload of the tab (sessionStorage), so it is entered once.
    page.reload()
    expect(page.get_by_test_id("signed-in")).to_have_text("token tenant")

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
    # 30 + 1 of dave's (the live one on Wednesday), erin's on Monday, Wednesday and Friday.
    assert days == [["2024-03-04", 11], ["2024-03-05", 10], ["2024-03-06", 12], ["2024-03-07", 0],
                    ["2024-03-08", 1]]
    expect(page.locator("#total-events")).to_have_text("34")
    monday = page.locator("#events-per-day g.day[data-date='2024-03-04'] rect.segment").evaluate_all(
        "rects => Object.fromEntries(rects.map(rect => [rect.dataset.type, Number(rect.dataset.count)]))")
    assert monday == {"customer.order.paid": 2, "customer.publication.succeeded": 3,
                      "customer.redemption.rollback.succeeded": 1, "customer.redemption.succeeded": 3,
                      "customer.segment.entered": 1, "customer.segment.left": 1}
    busy = page.locator("#heatmap rect.cell:not([data-count='0'])").evaluate_all(
        "cells => cells.map(cell => [cell.dataset.weekday, Number(cell.dataset.hour), Number(cell.dataset.count)])")
    assert sum(count for _, _, count in busy) == 34
    assert ["Mon", 9, 2] in busy and ["Wed", 14, 1] in busy and ["Fri", 18, 1] in busy
    funnel = page.locator("#funnel g.campaign").evaluate_all(
        "groups => groups.map(g => [g.dataset.campaignId, +g.dataset.published, +g.dataset.redeemed, +g.dataset.rolledBack])")
    assert funnel == [[str(SPRING[0]), 5, 5, 4], [funnel[1][0], 4, 4, 0]]
    expect(page.locator("#funnel")).to_contain_text("Spring Sale · DISCOUNT_COUPONS")
    top = page.locator("#top-customers tbody tr").evaluate_all(
        "rows => rows.map(row => [row.querySelector('a').textContent, Number(row.dataset.events)])")
    assert top == [["dave-src", 31], ["erin-src", 3]]
    expect(page.locator("#lag-events")).to_have_text("34")
    expect(page.locator("#reader-lag")).to_have_text("Replication lag needs an admin token.")
    page.screenshot(path=ARTIFACTS / "dashboard-overview.png", full_page=True)

    # A top customer links back to its timeline.
    page.click("#top-customers a >> text=erin-src")
    expect(page.locator("#timeline > li")).to_have_count(3)
    expect(page.locator("#customer-source-id")).to_have_text("erin-src")


def test_another_tenant_sees_none_of_it(page: Page, base_url: str, seeded: Seeded) -> None:
    sign_in(page, f"{base_url}/dashboard", "globex-token", tenant="globex")
    expect(page.get_by_test_id("signed-in")).to_have_text("tenant globex")
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
    sign_in(page, f"{base_url}/dashboard/overview", "acme-token", tenant="globex")
    expect(page.locator("#message")).to_contain_text("this token does not grant access to tenant 'globex'")
    expect(page.locator("#events-per-day svg")).to_have_count(0)
