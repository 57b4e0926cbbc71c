"""deploy/: the environment template lists every setting, nginx accepts the site, systemd the units."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
#: Read by gunicorn, prometheus_client or tracker/ops rather than config.py; the template lists them too.
OUTSIDE_CONFIG = {
    "PROMETHEUS_MULTIPROC_DIR",
    "TRACKER_METRICS_TOKEN",
    "TRACKER_METRICS_ALLOW",
    "TRACKER_LOG_FORMAT",
    "WEB_CONCURRENCY",
}


def config_variables() -> set[str]:
    """Every environment variable config.py reads (os.environ.get / os.environ[...] / _env_*)."""
    text = (ROOT / "config.py").read_text()
    pattern = (
        r'(?:os\.environ\.get|os\.getenv|_env_\w+)\(\s*"([A-Z][A-Z0-9_]*)"'
        r'|os\.environ\[\s*"([A-Z][A-Z0-9_]*)"\s*\]'
    )
    return {a or b for a, b in re.findall(pattern, text)}


def template_variables() -> dict[str, str]:
    """NAME → value of every line ``NAME=value`` or ``#NAME=value`` in deploy/tracker.env.example."""
    lines = (DEPLOY / "tracker.env.example").read_text().splitlines()
    return dict(re.findall(r"^#?([A-Z][A-Z0-9_]*)=(.*)$", "\n".join(lines), re.M))


def test_config_reads_variables_at_all():
    found = config_variables()
    assert {"SECRET_KEY", "DATABASE_URL", "TRACKER_LEASE_SECONDS", "MAIL_SERVER"} <= found


def test_env_template_lists_every_setting():
    listed = template_variables()
    missing = sorted((config_variables() | OUTSIDE_CONFIG) - set(listed))
    assert not missing, f"deploy/tracker.env.example does not list {missing}"


def test_env_template_has_no_secrets():
    listed = template_variables()
    for name in ("SECRET_KEY", "TRACKER_METRICS_TOKEN", "MAIL_PASSWORD", "TRACKER_SSO_CLIENT_SECRET"):
        assert listed[name] == "", f"{name} must be left blank in the template"
    # Each secret says how to make it.
    text = (DEPLOY / "tracker.env.example").read_text()
    assert text.count("secrets.token_urlsafe") >= 2


def test_nginx_site_settings():
    site = (DEPLOY / "nginx" / "tracker.conf").read_text()
    assert re.search(r"client_max_body_size\s+51m;", site)
    assert re.search(r"proxy_next_upstream\s+error timeout http_502 http_503;", site)
    assert "non_idempotent" not in re.sub(r"#.*", "", site)  # POSTs are never sent twice
    assert re.search(r"proxy_set_header\s+X-Request-ID\s+\$request_id;", site)
    for header in ("Host", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Port"):
        assert re.search(rf"proxy_set_header\s+{header}\s", site), header
    timeout = re.search(r"proxy_read_timeout\s+(\d+)s;", site)
    assert timeout and int(timeout.group(1)) >= 60
    assert "Strict-Transport-Security" not in re.sub(r"#.*", "", site)  # the app sends it
    assert re.search(r"return\s+301\s+https://", site)


def _nginx_wrapper(tmp_path: Path, site: str) -> Path:
    """A whole nginx.conf under ``tmp_path`` that includes ``site``."""
    for sub in ("logs", "body", "proxy"):
        (tmp_path / sub).mkdir(exist_ok=True)
    (tmp_path / "site.conf").write_text(site)
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/logs/error.log;\nevents {{}}\n"
        f"http {{\n  access_log off;\n  client_body_temp_path {tmp_path}/body;\n"
        f"  proxy_temp_path {tmp_path}/proxy;\n  include {tmp_path}/site.conf;\n}}\n"
    )
    return conf


def _nginx_test(tmp_path: Path, conf: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["nginx", "-t", "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "logs" / "error.log")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


needs_nginx = pytest.mark.skipif(
    shutil.which("nginx") is None,
    reason="nginx is not installed (apt-get install nginx; .ci/run installs it)",
)


@needs_nginx
@pytest.mark.skipif(
    shutil.which("openssl") is None, reason="openssl is not installed (needed for a test certificate)"
)
def test_nginx_accepts_the_site(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    site = (DEPLOY / "nginx" / "tracker.conf").read_text()
    site = re.sub(r"ssl_certificate\s+\S+;", f"ssl_certificate {cert};", site)
    site = re.sub(r"ssl_certificate_key\s+\S+;", f"ssl_certificate_key {key};", site)
    done = _nginx_test(tmp_path, _nginx_wrapper(tmp_path, site))
    assert done.returncode == 0, done.stderr
    broken = _nginx_test(
        tmp_path, _nginx_wrapper(tmp_path, site.replace("client_max_body_size 51m;", "client_max_body 51m;"))
    )
    assert broken.returncode != 0  # the test would notice a broken site


@needs_nginx
def test_the_checks_site_is_built_from_the_real_one(tmp_path):
    spec = importlib.util.spec_from_file_location("deploy_check", DEPLOY / "check.py")
    check = importlib.util.module_from_spec(spec)
    sys.modules["deploy_check"] = check
    try:
        spec.loader.exec_module(check)
        site = check.check_site(
            (DEPLOY / "nginx" / "tracker.conf").read_text(), 18080, [18001, 18002], tmp_path
        )
    finally:
        del sys.modules["deploy_check"]
    assert "server 127.0.0.1:18001 max_fails=1 fail_timeout=10s;" in site
    assert "ssl_" not in site and "listen 127.0.0.1:18080;" in site
    assert "client_max_body_size 51m;" in site and f"alias {tmp_path}/;" in site
    done = _nginx_test(tmp_path, _nginx_wrapper(tmp_path, site))
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed (systemd)"
)
def test_systemd_units_verify(tmp_path):
    venv_bin = Path(sys.executable).parent
    units = sorted(DEPLOY.glob("systemd/*.service")) + sorted(DEPLOY.glob("systemd/*.timer"))
    assert {u.name for u in units} >= {"tracker-web.service", "tracker-scheduler.service"}
    for unit in units:
        # The units name the installed paths; point them at this checkout so the commands exist.
        text = unit.read_text().replace("/srv/tracker/app/.venv/bin", str(venv_bin))
        (tmp_path / unit.name).write_text(text.replace("/srv/tracker/app", str(ROOT)))
    done = subprocess.run(
        ["systemd-analyze", "verify", *(str(tmp_path / u.name) for u in units)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    ours = [line for line in (done.stdout + done.stderr).splitlines() if "tracker-" in line]
    assert done.returncode == 0 and not ours, done.stdout + done.stderr


def test_units_run_what_the_readme_says():
    web = (DEPLOY / "systemd" / "tracker-web.service").read_text()
    scheduler = (DEPLOY / "systemd" / "tracker-scheduler.service").read_text()
    assert "gunicorn -c deploy/gunicorn.conf.py" in web and "wsgi:app" in web
    assert "PROMETHEUS_MULTIPROC_DIR=/run/tracker-web/" in web and "RuntimeDirectory=tracker-web" in web
    assert "Restart=on-failure" in web and "NoNewPrivileges=yes" in web
    assert "flask --app wsgi tracker scheduler" in scheduler
    assert "Restart=always" in scheduler and "KillSignal=SIGTERM" in scheduler
