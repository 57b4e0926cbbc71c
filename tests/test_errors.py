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


def test_an_api_path_no_route_takes_still_answers_with_a_problem(client):
    # A line break in a path segment escapes the API's catch-all route (found by schemathesis):
    # the site's handler must still answer an /api/v1 path as the API does, not with an HTML page.
    for method in ("get", "post"):
        response = getattr(client, method)("/api/v1/actions/8%0Ax/extensions", json={})
        assert response.status_code == 404, response.text[:200]
        assert response.content_type == "application/problem+json"
        assert response.get_json()["status"] == 404
    assert client.get("/no/such%0Apage").content_type.startswith("text/html")  # the site: its page
