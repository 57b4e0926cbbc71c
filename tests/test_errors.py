"""Error pages share the site's layout; an unexpected error shows a 500 page, not a traceback."""

from __future__ import annotations

from tracker import create_app


def test_unexpected_error_is_a_500_page_in_the_layout(database_url):
    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url, "PROPAGATE_EXCEPTIONS": False})

    @app.route("/boom")
    def boom():
        raise RuntimeError("something broke")

    response = app.test_client().get("/boom")
    assert response.status_code == 500
    assert "Something went wrong" in response.text and 'class="site-header"' in response.text
    assert "RuntimeError" not in response.text and "Traceback" not in response.text


def test_404_and_405_pages(client):
    missing = client.get("/no/such/page")
    assert (
        missing.status_code == 404 and "Not found" in missing.text and 'class="site-header"' in missing.text
    )
    assert client.delete("/auth/login").status_code == 405


def test_oversized_request_is_413(app, client):
    body = b"x" * (app.config["MAX_CONTENT_LENGTH"] + 10)
    response = client.post("/auth/login", data=body, content_type="application/octet-stream")
    assert response.status_code == 413 and "Too large" in response.text
