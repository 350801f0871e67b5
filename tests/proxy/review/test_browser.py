"""The reviewer UI in real Chromium (Debian's, through Playwright): what a reviewer does, end to end.

Each page is saved as a screenshot under .artifacts/review/ so the UI can be looked at.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.proxy.review.conftest import PASSWORDS
from tests.proxy.review.served import ServedProxy

playwright_sync = pytest.importorskip("playwright.sync_api")
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[3] / ".artifacts" / "review"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (make test installs it)")
XSS = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'


# One browser for all browser tests. Module scope, not session: sync Playwright keeps an event loop
# running on the main thread while it is open, which the async tests that follow could not start under.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_sync.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, reviewer_config: list[dict[str, Any]]) -> Iterator[ServedProxy]:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    with ServedProxy(tmp_path_factory.mktemp("browser") / "review.sqlite3", reviewer_config) as proxy:
        yield proxy


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def login(browser: Any, served: ServedProxy, name: str) -> Any:
    context = browser.new_context()
    page = context.new_page()
    page.goto(served.url + "/review/queue")  # not logged in: sent to the login page
    assert page.url.endswith("/review/login")
    page.fill("#name", name)
    page.fill("#password", PASSWORDS[name])
    page.click("#login-button")
    page.wait_for_url("**/review/queue")
    return page


def wait_items(served: ServedProxy, model: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:
        rows = [r for r in served.call(served.service.store.export) if r["model"] == model]
        if len(rows) >= count:
            return rows
        assert time.monotonic() < deadline, f"only {len(rows)} items for {model}"
        time.sleep(0.05)


def rate_of(page: Any, served: ServedProxy, model: str) -> str:
    page.goto(served.url + "/review/estimates")
    return str(page.inner_text(f'tr[data-model="{model}"] td.rate'))


def test_login_claim_label_by_keyboard_and_watch_the_estimate(browser: Any, served: ServedProxy) -> None:
    for i in range(3):
        served.chat("keys-model", f"answer number {i}")
    wait_items(served, "keys-model", 3)
    page = login(browser, served, "alice")
    page.goto(served.url + "/review/login")
    shot(page, "01-login")
    page.goto(served.url + "/review/queue?model=keys-model")
    assert page.locator("tr.queue-row").count() == 3
    shot(page, "02-queue")
    time.sleep(0.2)  # the traffic counts are saved every 50 ms
    before = rate_of(page, served, "keys-model")
    assert before == "0.00%"
    shot(page, "03-estimates-before")
    page.goto(served.url + "/review/queue?model=keys-model")
    page.keyboard.press("n")  # claim the next item
    page.wait_for_url("**/review/items/**")
    assert page.locator("#lease").is_visible()
    page.keyboard.press("1")  # first category
    assert page.locator('input[data-key="1"]').is_checked()
    shot(page, "04-item-claimed")
    page.keyboard.press("v")  # label: violation
    page.wait_for_url("**/review/queue**")
    assert page.inner_text("#notice") == "labelled"
    after = rate_of(page, served, "keys-model")
    assert after != before and after == "100.00%"  # one decided item of three drawn stands for all three
    assert page.inner_text('tr[data-model="keys-model"] td.interval') != "0.00% – 0.00%"
    shot(page, "05-estimates-after")
    page.context.close()


def test_model_output_with_markup_renders_as_text(browser: Any, served: ServedProxy) -> None:
    served.chat("xss-model", XSS)
    (row,) = wait_items(served, "xss-model", 1)
    page = login(browser, served, "alice")
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.goto(served.url + f"/review/items/{row['id']}")
    assert page.inner_text("#output") == XSS  # shown, character for character, as text
    assert page.evaluate("window.pwned") is None
    assert page.locator("#output script, #output img").count() == 0
    page.goto(served.url + "/review/queue?model=xss-model")  # the queue shows outputs too
    assert page.evaluate("window.pwned") is None and dialogs == []
    page.goto(served.url + f"/review/items/{row['id']}")
    shot(page, "06-item-with-markup")
    page.context.close()


def test_a_second_reviewer_cannot_take_a_leased_item(browser: Any, served: ServedProxy) -> None:
    served.chat("lease-model", "an answer to hold")
    (row,) = wait_items(served, "lease-model", 1)
    alice = login(browser, served, "alice")
    alice.goto(served.url + "/review/queue?model=lease-model")
    alice.keyboard.press("n")
    alice.wait_for_url(f"**/review/items/{row['id']}**")
    bob = login(browser, served, "bob")
    bob.goto(served.url + f"/review/items/{row['id']}")
    assert bob.locator("#held").is_visible() and bob.locator("#label-form").count() == 0
    shot(bob, "07-item-held-by-another")
    csrf = bob.get_attribute('form[action="/review/logout"] input[name="csrf"]', "value")
    response = bob.context.request.post(served.url + f"/review/items/{row['id']}/claim", form={"csrf": csrf},
                                        max_redirects=0)
    assert response.status == 409
    response = bob.context.request.post(served.url + f"/review/items/{row['id']}/label",
                                        form={"csrf": csrf, "label": "ok"}, max_redirects=0)
    assert response.status == 409
    item = served.call(lambda: served.service.store.get(row["id"]))
    assert item is not None and item.lease_owner == "alice" and item.labels == []
    alice.context.close()
    bob.context.close()


def test_a_form_without_its_csrf_token_is_refused(browser: Any, served: ServedProxy) -> None:
    served.chat("csrf-model", "an answer")
    wait_items(served, "csrf-model", 1)
    page = login(browser, served, "alice")
    page.goto(served.url + "/review/queue?model=csrf-model")
    page.evaluate("document.querySelector('#claim-next input[name=csrf]').remove()")
    page.click("#claim-next-button")
    page.wait_for_load_state()
    assert "CSRF token is missing or wrong" in page.inner_text("#error-message")
    shot(page, "08-csrf-refused")
    rows = [r for r in served.call(served.service.store.export) if r["model"] == "csrf-model"]
    assert served.call(lambda: served.service.store.get(rows[0]["id"])).lease_owner is None  # type: ignore[union-attr]
    page.context.close()
