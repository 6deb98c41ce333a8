"""`make -f Makefile.apxs install` into a staging DESTDIR: every file lands
where the README says, the installed aiproxy.load loads the installed module
and the installed mods-available aiproxy.conf passes `apache2 -t`; a site's
edited configuration is never overwritten."""
import os
import subprocess

import pytest

from conftest import APACHE, ROOT, TOKEN_SECRET

LIBEXEC = subprocess.run(["apxs", "-q", "LIBEXECDIR"], capture_output=True, text=True,
                         check=True).stdout.strip()
MODS = "/usr/lib/apache2/modules"
FILES = [
    LIBEXEC + "/mod_aiproxy.so",
    "/etc/apache2/mods-available/aiproxy.load",
    "/etc/apache2/mods-available/aiproxy.conf",
    "/etc/apache2/sites-available/aiproxy.conf",
    "/etc/aiproxy/prices.conf",
    "/usr/local/bin/aiproxy-admin",
    "/usr/local/bin/aiproxy-prices",
    "/usr/local/bin/aiproxy-schema",
    "/usr/local/share/aiproxy/schema/collections.json",
    "/usr/local/share/aiproxy/schema/apply.py",
    "/usr/local/share/aiproxy/www/index.html",
    "/usr/local/share/aiproxy/www/admin.html",
    "/usr/local/share/aiproxy/www/app.js",
    "/usr/local/share/man/man1/aiproxy-admin.1",
    "/usr/local/share/man/man1/aiproxy-schema.1",
]


def install(dest):
    p = subprocess.run(["make", "-s", "-f", "Makefile.apxs", "install", "DESTDIR=%s" % dest],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


@pytest.fixture(scope="module")
def dest(tmp_path_factory):
    d = tmp_path_factory.mktemp("destdir")
    install(d)
    return d


def staged(dest, text):
    """The installed text with its absolute paths moved under DESTDIR."""
    for prefix in (LIBEXEC, "/etc/aiproxy", "/usr/local/share/aiproxy"):
        text = text.replace(prefix, "%s%s" % (dest, prefix))
    return text


def configtest(dest, tmp_path, *includes):
    conf = tmp_path / "httpd.conf"
    lines = ["ServerRoot %s" % tmp_path, "ServerName localhost", "Listen 127.0.0.1:1",
             "PidFile %s/httpd.pid" % tmp_path, "DefaultRuntimeDir %s" % tmp_path,
             "ErrorLog %s/error.log" % tmp_path, "Mutex file:%s default" % tmp_path]
    # What a2enmod aiproxy enables first (its Depends: line), and the rest
    # of Debian's default set the installed aiproxy.conf uses.
    for m in ("mpm_event", "authz_core", "alias", "dir", "mime", "socache_shmcb", "ssl",
              "proxy", "proxy_http", "reqtimeout"):
        lines.append("LoadModule %s_module %s/mod_%s.so" % (m, MODS, m))
    for name in includes:
        text = (dest / ("etc/apache2/mods-available/" + name)).read_text()
        (tmp_path / name).write_text(staged(dest, text))
        lines.append("Include %s/%s" % (tmp_path, name))
    conf.write_text("\n".join(lines) + "\n")
    env = dict(os.environ, AIPROXY_TOKEN_SECRET=TOKEN_SECRET)
    p = subprocess.run([APACHE, "-f", str(conf), "-t"], capture_output=True, text=True,
                       env=env, timeout=60)
    return p.returncode, p.stdout + p.stderr


def test_files_land_where_stated(dest):
    for f in FILES:
        assert (dest / f.lstrip("/")).is_file(), f
    for f in ("/usr/local/bin/aiproxy-admin", "/usr/local/bin/aiproxy-schema"):
        assert os.access(dest / f.lstrip("/"), os.X_OK), f
    load = (dest / "etc/apache2/mods-available/aiproxy.load").read_text()
    assert "LoadModule aiproxy_module %s/mod_aiproxy.so" % LIBEXEC in load
    assert "# Depends: proxy proxy_http ssl reqtimeout" in load      # for a2enmod
    conf = (dest / "etc/apache2/mods-available/aiproxy.conf").read_text()
    assert "@" + "SYSCONFDIR@" not in conf and "Include /etc/aiproxy/prices.conf" in conf
    site = (dest / "etc/apache2/sites-available/aiproxy.conf").read_text()
    assert 'Alias /admin/ "/usr/local/share/aiproxy/www/"' in site
    assert "Protocols h2 http/1.1" in site and "AIProxyRoute openai" in site
    schema = (dest / "usr/local/bin/aiproxy-schema").read_text()
    assert "/usr/local/share/aiproxy/schema/apply.py" in schema


def test_installed_cli_runs(dest):
    p = subprocess.run([str(dest / "usr/local/bin/aiproxy-admin"), "--help"],
                       capture_output=True, text=True)
    assert p.returncode == 0 and "--store URI" in p.stdout


def test_installed_module_loads(dest, tmp_path):
    rc, out = configtest(dest, tmp_path, "aiproxy.load")
    assert rc == 0 and "Syntax OK" in out, out


def test_installed_conf_passes_configtest(dest, tmp_path):
    etc = dest / "etc/aiproxy"
    (etc / "token-secret").write_text(TOKEN_SECRET + "\n")
    (etc / "openai-key").write_text("sk-test\n")
    rc, out = configtest(dest, tmp_path, "aiproxy.load", "aiproxy.conf")
    assert rc == 0 and "Syntax OK" in out, out


def test_reinstall_keeps_a_sites_configuration(tmp_path):
    install(tmp_path)
    prices = tmp_path / "etc/aiproxy/prices.conf"
    conf = tmp_path / "etc/apache2/mods-available/aiproxy.conf"
    prices.write_text("# edited by the site\n")
    conf.write_text("# edited by the site\n")
    out = install(tmp_path)
    assert prices.read_text() == conf.read_text() == "# edited by the site\n"
    assert "AIProxyPrice gpt-4o-mini" in (tmp_path / "etc/aiproxy/prices.conf.new").read_text()
    assert (tmp_path / "etc/apache2/mods-available/aiproxy.conf.new").is_file()
    assert "kept" in out
