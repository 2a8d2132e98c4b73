"""Hospital sign-on through a real OpenID Connect provider (npm oidc-provider on loopback),
a real gateway server and headless Chromium: authorization code + PKCE, the role from a claim,
the same session cookie as a local account; a person without a role is refused."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from dcmtk_peers import free_port, stop, wait_listening
from oidc_peer import CLIENT_SECRET, running_oidc_provider

pytestmark = [pytest.mark.integration, pytest.mark.needs_browser]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update"]


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with running_oidc_provider(f"{url}/auth/oidc/callback", tmp_path / "oidc.log") as issuer:
        data = tmp_path / "data"
        data.mkdir()
        (data / "service.toml").write_text(
            f'[service]\nport = {port}\noidc_issuer = "{issuer}"\n'
            f'oidc_client_secret = "{CLIENT_SECRET}"\n'
            f'oidc_redirect_uri = "{url}/auth/oidc/callback"\n')
        server = subprocess.Popen([sys.executable, "-m", "vid2dcm", "serve", "--data",
                                   str(data)], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_listening(port, server, seconds=30)
            yield url
        finally:
            stop(server)


def _sign_on(page: object, gateway: str, login: str) -> None:
    from playwright.sync_api import Page

    assert isinstance(page, Page)
    page.goto(gateway + "/")
    page.get_by_test_id("oidc-login").click()
    page.locator("input[name='login']").fill(login)  # the provider's own sign-in form
    page.locator("input[name='password']").fill("any")
    page.locator("button[type='submit']").click()
    page.locator("button[type='submit']").click()  # consent: Continue


def test_hospital_sign_on_with_pkce_and_role_claim(gateway: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            auth_request: list[str] = []
            page.on("request", lambda r: auth_request.append(r.url)
                    if "/auth?" in r.url else None)
            _sign_on(page, gateway, "doc.house")
            expect(page.locator("#who-name")).to_have_text("doc.house (reviewer)",
                                                           timeout=15_000)
            assert "code_challenge_method=S256" in auth_request[0]
            assert "code_challenge=" in auth_request[0] and "nonce=" in auth_request[0]
            me = page.evaluate("async () => (await fetch('/auth/me')).json()")
            assert me["role"] == "reviewer" and "review" in me["scopes"]
            cookie = next(c for c in page.context.cookies() if c["name"] == "vid2dcm_session")
            assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
            page.locator("#signout").click()
            expect(page.get_by_test_id("oidc-login")).to_be_visible()

            other = browser.new_page()
            _sign_on(other, gateway, "nobody.special")
            expect(other.locator("#signin-error")).to_contain_text("no role for this gateway",
                                                                   timeout=15_000)
            assert other.evaluate("async () => (await fetch('/auth/me')).status") == 401
        finally:
            browser.close()


def test_a_forged_callback_is_refused(gateway: str) -> None:
    opener = urllib.request.build_opener(NoRedirect())
    try:
        opener.open(f"{gateway}/auth/oidc/callback?state=made-up&code=stolen", timeout=30)
    except urllib.error.HTTPError as answer:
        assert answer.code == 303
        assert "expired" in answer.headers["Location"]
        assert "set-cookie" not in {k.lower() for k in answer.headers}
    else:
        raise AssertionError("the callback accepted an unknown state")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_args: object, **_kwargs: object) -> None:
        return None
