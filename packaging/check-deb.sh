#!/usr/bin/env bash
# Builds the .deb with cargo-deb, installs it on this machine with dpkg, checks that everything is
# in place (binary, units, user, conffiles, doc), that the installed units verify and the binary
# serves as the ml_api_logger user, then removes and purges it and checks that it is gone.
#
#   packaging/check-deb.sh              # build with `cargo deb`, then check
#   packaging/check-deb.sh FILE.deb     # check a package already built
#
# Needs root, dpkg, and cargo-deb (`cargo install cargo-deb --locked`) unless given a file. It
# refuses to run when ml-api-logger is already installed: it would remove it. The ml_api_logger
# user is kept at purge (as Debian keeps system users); set REMOVE_USER=1 to delete it at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

PKG=ml-api-logger
fail() { echo "check-deb: FAIL: $*" >&2; exit 1; }
ok() { echo "check-deb: ok: $*"; }

[ "$(id -u)" = 0 ] || fail "must run as root (dpkg -i)"
if dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -q "installed"; then
    fail "$PKG is already installed here; remove it first (this check would)"
fi

if [ $# -ge 1 ]; then
    DEB=$1
else
    command -v cargo-deb >/dev/null || fail "cargo-deb not installed: cargo install cargo-deb --locked"
    start=$SECONDS
    # cargo deb's output is shown as it comes, on this script's own standard error (a process
    # substitution shares its file offset; `tee /dev/stderr` would reopen, and so clobber, a log
    # file the caller sent it to).
    DEB=$(cargo deb --locked 2>&1 | tee >(cat >&2) | grep '\.deb$' | tail -1)
    [ -n "$DEB" ] || fail "cargo deb built no .deb"
    ok "built $DEB in $((SECONDS - start)) s"
fi
[ -f "$DEB" ] || fail "no package file: $DEB"

# --- install ----------------------------------------------------------------------------------
dpkg -i "$DEB"
trap 'dpkg --purge "$PKG" >/dev/null 2>&1 || true' EXIT
dpkg-query -W -f='${Status}\n' "$PKG" | grep -q "install ok installed" || fail "not installed"
ok "installed $(dpkg-query -W -f='${Package} ${Version}' "$PKG")"

for f in /usr/bin/ml_api_logger \
         /usr/lib/systemd/system/ml_api_logger.service \
         /usr/lib/systemd/system/ml_api_logger.socket \
         /usr/lib/sysusers.d/ml_api_logger.conf \
         /etc/default/ml_api_logger \
         /etc/logrotate.d/ml_api_logger \
         /usr/share/doc/$PKG/README.md \
         /usr/share/doc/$PKG/copyright; do
    [ -f "$f" ] || fail "missing $f"
done
ok "files in place"
/usr/bin/ml_api_logger --version | grep -q "ml_api_logger" || fail "the binary does not run"
dpkg-query -W -f='${Conffiles}\n' "$PKG" | grep -q /etc/default/ml_api_logger || fail "env file not a conffile"
[ "$(stat -c %a /etc/default/ml_api_logger)" = 640 ] || fail "/etc/default/ml_api_logger not mode 0640"

# The user, made by systemd-sysusers in postinst.
getent passwd ml_api_logger >/dev/null || fail "no ml_api_logger user"
getent group ml_api_logger >/dev/null || fail "no ml_api_logger group"
[ "$(getent passwd ml_api_logger | cut -d: -f7)" = /usr/sbin/nologin ] || fail "the user can log in"
uid=$(id -u ml_api_logger)
[ "$uid" -lt 1000 ] || fail "ml_api_logger is not a system user (uid $uid)"
ok "user ml_api_logger (uid $uid) and its group"

# Enabled at install (deb-systemd-helper makes the links even without a running systemd).
[ -L /etc/systemd/system/sockets.target.wants/ml_api_logger.socket ] || fail "socket not enabled"
[ -L /etc/systemd/system/multi-user.target.wants/ml_api_logger.service ] || fail "service not enabled"
ok "units enabled"

if command -v systemd-analyze >/dev/null; then
    (cd /usr/lib/systemd/system && systemd-analyze verify ml_api_logger.service ml_api_logger.socket) \
        || fail "systemd-analyze verify"
    score=$(systemd-analyze security --offline=yes /usr/lib/systemd/system/ml_api_logger.service 2>&1 \
        | grep -o 'Overall exposure level for ml_api_logger.service: [0-9.]*.*' || true)
    ok "systemd-analyze verify; $score"
fi
if command -v logrotate >/dev/null; then
    logrotate -d /etc/logrotate.d/ml_api_logger >/dev/null 2>&1 || fail "logrotate -d"
    ok "logrotate accepts the snippet"
fi

# The installed binary serves as the installed user.
tmp=$(mktemp -d)
chown ml_api_logger:ml_api_logger "$tmp"
log=$tmp/stderr
setpriv --reuid=ml_api_logger --regid=ml_api_logger --clear-groups \
    /usr/bin/ml_api_logger --ip 127.0.0.1 --port 0 --cert-dir "$tmp/certs" --output "$tmp/out.json" \
    2>"$log" &
pid=$!
for _ in $(seq 100); do grep -q "listening on https://" "$log" && break; sleep 0.1; done
grep -q "listening on https://" "$log" || { cat "$log"; kill "$pid"; fail "the installed daemon did not start"; }
kill -TERM "$pid"
wait "$pid" || fail "the daemon did not stop cleanly"
[ "$(stat -c %U "$tmp/certs/server.key")" = ml_api_logger ] || fail "files not owned by the user"
rm -rf "$tmp"
ok "the installed daemon serves as ml_api_logger and stops with exit 0"

# --- remove, then purge -----------------------------------------------------------------------
dpkg -r "$PKG"
for f in /usr/bin/ml_api_logger /usr/lib/systemd/system/ml_api_logger.service \
         /usr/lib/systemd/system/ml_api_logger.socket /usr/lib/sysusers.d/ml_api_logger.conf; do
    [ ! -e "$f" ] || fail "$f left after dpkg -r"
done
[ -f /etc/default/ml_api_logger ] || fail "dpkg -r removed a conffile (only --purge should)"
ok "removed: program and units gone, conffiles kept"

dpkg --purge "$PKG"
trap - EXIT
for f in /etc/default/ml_api_logger /etc/logrotate.d/ml_api_logger /usr/share/doc/$PKG \
         /etc/systemd/system/sockets.target.wants/ml_api_logger.socket \
         /etc/systemd/system/multi-user.target.wants/ml_api_logger.service; do
    [ ! -e "$f" ] && [ ! -L "$f" ] || fail "$f left after dpkg --purge"
done
if dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -q "installed"; then
    fail "still known to dpkg"
fi
ok "purged: nothing of the package left (the ml_api_logger user stays, as Debian keeps system users)"

if [ "${REMOVE_USER:-0}" = 1 ]; then
    userdel ml_api_logger 2>/dev/null || true
    groupdel ml_api_logger 2>/dev/null || true
    ok "user ml_api_logger deleted (REMOVE_USER=1)"
fi
echo "check-deb: all checks passed"
