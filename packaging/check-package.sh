#!/bin/sh
# Checks a built cros-garcon .deb against garcon-host.md §17.1/§17.2/§19 (items 50-53, without
# installing it anywhere).
#
#   packaging/check-package.sh [DEB] [CHECK...]
#
# DEB defaults to the newest target/packaging/cros-garcon_*_all.deb. With no CHECK, runs all of:
# control files modes conffiles unit handlers maintscripts polkit portal desktop hook environment
# ansible unit-verify lintian. Prints "ok <check>" per passing check, "FAIL <check>: <reason>" and exits 1
# on the first failure; a check whose tool is missing prints "skip <check>: <reason>".
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
. "$here/lib.sh"

deb=
case "${1:-}" in
*.deb) deb=$1; shift ;;
esac
if [ -z "$deb" ]; then
    deb=$(ls -t "$repo"/target/packaging/cros-garcon_*_all.deb 2>/dev/null | head -n 1) ||
        true
fi
[ -n "$deb" ] && [ -f "$deb" ] || die "no package found; run packaging/build-deb.sh first"

work=$(mktemp -d "${TMPDIR:-/tmp}/check-package.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
data=$work/data
control=$work/control
dpkg-deb -x "$deb" "$data"
dpkg-deb -e "$deb" "$control"
dpkg-deb -c "$deb" >"$work/contents"

current=
fail() {
    echo "FAIL $current: $*" >&2
    exit 1
}

# has FILE FIXED-LINE: the file contains this exact line.
has() {
    grep -qxF -- "$2" "$1" || fail "$1 lacks the line '$2'"
}

field() {
    dpkg-deb -f "$deb" "$1"
}

UNIT=usr/lib/systemd/user/cros-garcon.service
WANTS=usr/lib/systemd/user/default.target.wants/cros-garcon.service
OVERRIDE=etc/systemd/user/cros-garcon.service.d/cros-garcon-override.conf
URL_HANDLER=usr/bin/garcon-url-handler
TERMINAL_HANDLER=usr/bin/garcon-terminal-handler
DESKTOP=usr/share/applications/garcon_host_browser.desktop
SKEL=etc/skel/.config/cros-garcon.conf
PKLA_PK=var/lib/polkit-1/localauthority/50-local.d/garcon-packagekit.pkla
PKLA_SYNAPTIC=var/lib/polkit-1/localauthority/50-local.d/garcon-synaptic.pkla
RULES=usr/share/polkit-1/rules.d/50-cros-garcon-packagekit.rules
HOOK=etc/dpkg/dpkg.cfg.d/garcon-hook
ANSIBLE=usr/share/ansible/plugins/callback/garcon.py
PORTAL=usr/share/xdg-desktop-portal/portals/cros.portal
PORTALS_CONF=usr/share/xdg-desktop-portal/x-generic-portals.conf
DBUS_SERVICE=usr/share/dbus-1/services/org.freedesktop.impl.portal.desktop.cros.service
ENVIRONMENT_D=usr/lib/environment.d/60-cros-garcon.conf
PROFILE_D=etc/profile.d/cros-garcon.sh
GARCON=/opt/google/cros-containers/bin/garcon

check_control() {
    [ "$(field Package)" = cros-garcon ] || fail "Package is '$(field Package)'"
    [ "$(field Architecture)" = all ] || fail "Architecture is '$(field Architecture)', want all"
    [ "$(field Section)" = misc ] || fail "Section is '$(field Section)'"
    [ "$(field Provides)" = x-terminal-emulator ] || fail "Provides is '$(field Provides)'"
    depends=$(field Depends)
    for dep in desktop-file-utils openssh-sftp-server packagekit xdg-utils; do
        echo "$depends" | tr ',' '\n' | sed 's/^ *//; s/ .*//' | grep -qxF "$dep" ||
            fail "Depends '$depends' lacks $dep"
    done
    version=$(field Version)
    dpkg --compare-versions "$version" gt 0.29 ||
        fail "Version $version does not upgrade upstream cros-garcon 0.29"
    [ -n "$(field Installed-Size)" ] || fail "no Installed-Size"
}

check_files() {
    for path in "$UNIT" "$OVERRIDE" "$URL_HANDLER" "$TERMINAL_HANDLER" "$DESKTOP" "$SKEL" \
        "$PKLA_PK" "$PKLA_SYNAPTIC" "$RULES" "$HOOK" "$ANSIBLE" "$PORTAL" "$PORTALS_CONF" \
        "$DBUS_SERVICE" "$ENVIRONMENT_D" "$PROFILE_D" usr/share/doc/cros-garcon/copyright \
        usr/share/doc/cros-garcon/changelog.gz \
        usr/share/man/man1/garcon-url-handler.1.gz usr/share/man/man1/garcon-terminal-handler.1.gz \
        usr/share/lintian/overrides/cros-garcon; do
        [ -f "$data/$path" ] || fail "missing /$path"
    done
    [ -L "$data/$WANTS" ] || fail "missing symlink /$WANTS"
    [ "$(readlink "$data/$WANTS")" = ../cros-garcon.service ] ||
        fail "/$WANTS points at '$(readlink "$data/$WANTS")'"
    [ -f "$data/$WANTS" ] || fail "/$WANTS dangles"
    # No binary: garcon comes from the VM.
    if find "$data" -type f -exec sh -c 'head -c 4 "$1" | grep -q "ELF"' sh {} \; -print |
        grep -q .; then
        fail "the package contains an ELF file, but it must be Architecture: all"
    fi
}

check_modes() {
    # dpkg-deb -c: "perms owner/group size date time ./path"
    awk '$2 != "root/root" { print "owner " $2 " on " $6; bad = 1 } END { exit bad }' \
        "$work/contents" || fail "files not owned by root/root"
    for path in "$URL_HANDLER" "$TERMINAL_HANDLER"; do
        grep -qE "^-rwxr-xr-x .* \./$path\$" "$work/contents" || fail "/$path is not 0755"
    done
    others=$(grep -E '^-' "$work/contents" | grep -vE " \./($URL_HANDLER|$TERMINAL_HANDLER)\$" |
        grep -vE '^-rw-r--r-- ' || true)
    [ -z "$others" ] || fail "data files not 0644: $others"
    dirs=$(grep -E '^d' "$work/contents" | grep -vE '^drwxr-xr-x ' || true)
    [ -z "$dirs" ] || fail "directories not 0755: $dirs"
}

check_conffiles() {
    [ -f "$control/conffiles" ] || fail "no conffiles"
    has "$control/conffiles" "/$OVERRIDE"
    has "$control/conffiles" "/$SKEL"
    has "$control/conffiles" "/$HOOK"
    (cd "$data" && find etc -type f | sed 's|^|/|' | sort) >"$work/etc-files"
    sort "$control/conffiles" >"$work/conffiles-sorted"
    cmp -s "$work/etc-files" "$work/conffiles-sorted" ||
        fail "conffiles differ from the files under /etc: $(diff "$work/etc-files" "$work/conffiles-sorted" | tr '\n' ' ')"
}

# Prints the Environment= assignments of a unit file or drop-in, one per line, sorted.
environment_of() {
    sed -n 's/^Environment="\(.*\)"$/\1/p; s/^Environment=\([^"].*\)$/\1/p' "$1" | sort
}

check_unit() {
    unit=$data/$UNIT
    has "$unit" "[Unit]"
    has "$unit" "Description=Chromium OS Garcon Bridge"
    has "$unit" "After=sommelier@0.service sommelier-x@0.service"
    has "$unit" "Type=simple"
    has "$unit" "ExecStart=$GARCON --server"
    has "$unit" "Restart=always"
    grep -qE '^ExecStopPost=-?/opt/google/cros-containers/bin/guest_service_failure_notifier cros-garcon$' \
        "$unit" || fail "$UNIT lacks the failure-notifier ExecStopPost"
    has "$unit" "WantedBy=default.target"
    environment_of "$unit" >"$work/unit-env"
    for assignment in BROWSER=/usr/bin/garcon-url-handler NCURSES_NO_UTF8_ACS=1 \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/local/games:/usr/sbin:/usr/bin:/usr/games:/sbin:/bin \
        QT_AUTO_SCREEN_SCALE_FACTOR=1 QT_QPA_PLATFORMTHEME=gtk2 XCURSOR_THEME=Adwaita \
        XDG_CONFIG_HOME=%h/.config XDG_CURRENT_DESKTOP=X-Generic XDG_SESSION_TYPE=wayland \
        XDG_DATA_DIRS=%h/.local/share:%h/.local/share/flatpak/exports/share:/var/lib/flatpak/exports/share:/usr/local/share:/usr/share; do
        grep -qxF -- "$assignment" "$work/unit-env" || fail "$UNIT lacks Environment $assignment"
    done
    has "$data/$OVERRIDE" "[Service]"
    environment_of "$data/$OVERRIDE" >"$work/override-env"
    cmp -s "$work/unit-env" "$work/override-env" ||
        fail "the override drop-in's environment differs from the unit's"
}

# run_handler HANDLER ARGS...: runs the handler with garcon replaced by a script printing its argv,
# one argument per line.
run_handler() {
    handler=$1
    shift
    mkdir -p "$work/fake"
    printf '#!/bin/sh\nfor a in "$@"; do printf "%%s\\n" "$a"; done\n' >"$work/fake/garcon"
    chmod 0755 "$work/fake/garcon"
    sed "s|$GARCON|$work/fake/garcon|" "$data/$handler" >"$work/fake/handler"
    sh "$work/fake/handler" "$@"
}

check_handlers() {
    for handler in "$URL_HANDLER" "$TERMINAL_HANDLER"; do
        head -n 1 "$data/$handler" | grep -qxF '#!/bin/sh' || fail "/$handler has no #!/bin/sh"
        sh -n "$data/$handler" || fail "/$handler: syntax error"
        grep -qF "exec $GARCON --client" "$data/$handler" || fail "/$handler does not exec garcon"
    done
    got=$(run_handler "$URL_HANDLER" "https://a b/" 'x"y' | tr '\n' '|')
    [ "$got" = '--client|--url|https://a b/|x"y|' ] || fail "url handler passed '$got'"
    got=$(run_handler "$TERMINAL_HANDLER" -e vim "notes 1.txt" | tr '\n' '|')
    [ "$got" = '--client|--terminal|-e|vim|notes 1.txt|' ] || fail "terminal handler passed '$got'"
}

# Fake update-alternatives and systemctl that log their arguments to $work/calls.
make_fake_tools() {
    rm -rf "$work/bin" "$work/root" "$work/calls"
    mkdir -p "$work/bin" "$work/root"
    : >"$work/calls"
    for tool in "$@"; do
        printf '#!/bin/sh\necho "%s $*" >>"%s"\n' "$tool" "$work/calls" >"$work/bin/$tool"
        chmod 0755 "$work/bin/$tool"
    done
    # The scripts may use mkdir; nothing else from the host.
    ln -s "$(command -v mkdir)" "$work/bin/mkdir"
}

run_maintscript() {
    env -i PATH="$work/bin" DPKG_ROOT="$work/root" "$control/$1" "$2" >"$work/out" 2>&1 ||
        fail "$1 $2 failed: $(cat "$work/out")"
}

check_maintscripts() {
    for script in postinst prerm; do
        [ -f "$control/$script" ] || fail "no $script"
        [ -x "$control/$script" ] || fail "$script is not executable"
        head -n 1 "$control/$script" | grep -qxF '#!/bin/sh' || fail "$script has no #!/bin/sh"
        sh -n "$control/$script" || fail "$script: syntax error"
    done

    make_fake_tools update-alternatives systemctl
    run_maintscript postinst configure
    cat >"$work/want" <<WANT
update-alternatives --install /usr/bin/x-www-browser x-www-browser /usr/bin/garcon-url-handler 200
update-alternatives --install /usr/bin/www-browser www-browser /usr/bin/garcon-url-handler 200
update-alternatives --install /usr/bin/gnome-www-browser gnome-www-browser /usr/bin/garcon-url-handler 200
update-alternatives --install /usr/bin/x-terminal-emulator x-terminal-emulator /usr/bin/garcon-terminal-handler 200
systemctl --root=$work/root --global enable cros-garcon.service
WANT
    cmp -s "$work/want" "$work/calls" ||
        fail "postinst configure made these calls: $(tr '\n' ';' <"$work/calls")"
    [ -d "$work/root/usr/share/desktop-directories" ] ||
        fail "postinst did not create /usr/share/desktop-directories"

    make_fake_tools update-alternatives
    run_maintscript postinst configure
    grep -q systemctl "$work/calls" && fail "postinst called systemctl although it is missing"
    [ "$(wc -l <"$work/calls")" -eq 4 ] || fail "postinst without systemctl: $(cat "$work/calls")"

    make_fake_tools update-alternatives systemctl
    run_maintscript prerm remove
    cat >"$work/want" <<WANT
update-alternatives --remove x-www-browser /usr/bin/garcon-url-handler
update-alternatives --remove www-browser /usr/bin/garcon-url-handler
update-alternatives --remove gnome-www-browser /usr/bin/garcon-url-handler
update-alternatives --remove x-terminal-emulator /usr/bin/garcon-terminal-handler
systemctl --root=$work/root --global disable cros-garcon.service
WANT
    cmp -s "$work/want" "$work/calls" ||
        fail "prerm remove made these calls: $(tr '\n' ';' <"$work/calls")"

    make_fake_tools update-alternatives systemctl
    run_maintscript prerm upgrade
    [ ! -s "$work/calls" ] || fail "prerm upgrade made calls: $(cat "$work/calls")"

    make_fake_tools update-alternatives systemctl
    if env -i PATH="$work/bin" "$control/postinst" bogus >/dev/null 2>&1; then
        fail "postinst accepted an unknown action"
    fi
}

check_polkit() {
    pkla=$data/$PKLA_PK
    has "$pkla" "Identity=unix-group:sudo"
    has "$pkla" "ResultAny=yes"
    actions=$(sed -n 's/^Action=//p' "$pkla" | tr ';' '\n' | sort | tr '\n' ' ')
    want="org.freedesktop.packagekit.package-install org.freedesktop.packagekit.package-install-untrusted org.freedesktop.packagekit.package-remove org.freedesktop.packagekit.system-sources-refresh "
    [ "$actions" = "$want" ] || fail "$PKLA_PK actions are '$actions'"
    has "$data/$PKLA_SYNAPTIC" "Identity=unix-group:sudo"
    has "$data/$PKLA_SYNAPTIC" "Action=com.ubuntu.pkexec.synaptic"
    has "$data/$PKLA_SYNAPTIC" "ResultAny=yes"
    if ! command -v node >/dev/null 2>&1; then
        echo "skip $current-rules: node is not installed, the JavaScript rule was not evaluated"
        return 0
    fi
    # Evaluate the rule with a minimal polkit object: sudo members get YES for each action,
    # others and unrelated actions are not handled.
    node - "$data/$RULES" <<'JS' || fail "the JavaScript rule decides wrongly"
const fs = require("fs");
let rule = null;
const polkit = { Result: { YES: "yes", NOT_HANDLED: null }, addRule: (f) => { rule = f; } };
eval(fs.readFileSync(process.argv[2], "utf8"));
const sudo = { isInGroup: (g) => g === "sudo" };
const other = { isInGroup: () => false };
const actions = ["org.freedesktop.packagekit.package-install",
    "org.freedesktop.packagekit.package-install-untrusted",
    "org.freedesktop.packagekit.package-remove",
    "org.freedesktop.packagekit.system-sources-refresh", "com.ubuntu.pkexec.synaptic"];
let ok = rule !== null;
for (const id of actions) {
    ok = ok && rule({ id }, sudo) === "yes" && rule({ id }, other) === null;
}
ok = ok && rule({ id: "org.freedesktop.packagekit.upgrade-system" }, sudo) === null;
process.exit(ok ? 0 : 1);
JS
}

check_portal() {
    has "$data/$PORTAL" "[portal]"
    has "$data/$PORTAL" "DBusName=org.freedesktop.impl.portal.desktop.cros"
    has "$data/$PORTAL" "Interfaces=org.freedesktop.impl.portal.FileChooser"
    has "$data/$PORTAL" "UseIn=X-Generic"
    has "$data/$PORTALS_CONF" "[preferred]"
    has "$data/$PORTALS_CONF" "org.freedesktop.impl.portal.FileChooser=cros"
    has "$data/$DBUS_SERVICE" "[D-BUS Service]"
    has "$data/$DBUS_SERVICE" "Name=org.freedesktop.impl.portal.desktop.cros"
    has "$data/$DBUS_SERVICE" "SystemdService=cros-garcon.service"
    grep -q '^Exec=' "$data/$DBUS_SERVICE" || fail "$DBUS_SERVICE has no Exec="
    # The portal file's base name is the backend name used in portals.conf.
    [ "$(basename "$PORTAL" .portal)" = cros ] || fail "portal file is not cros.portal"
}

check_desktop() {
    desktop=$data/$DESKTOP
    has "$desktop" "[Desktop Entry]"
    has "$desktop" "Type=Application"
    has "$desktop" "Name=Chrome OS Host Browser"
    has "$desktop" "Exec=$GARCON --client --url %U"
    has "$desktop" "NoDisplay=true"
    grep -qE '^OnlyShowIn=Never;?$' "$desktop" || fail "OnlyShowIn is not Never"
    mimes=$(sed -n 's/^MimeType=//p' "$desktop" | tr ';' '\n' | grep . | sort | tr '\n' ' ')
    [ "$mimes" = "x-scheme-handler/ftp x-scheme-handler/http x-scheme-handler/https x-scheme-handler/mailto " ] ||
        fail "MimeType is '$mimes'"
    if command -v desktop-file-validate >/dev/null 2>&1; then
        desktop-file-validate "$desktop" >"$work/out" 2>&1 ||
            fail "desktop-file-validate: $(cat "$work/out")"
    fi
    has "$data/$SKEL" "DisableAutomaticCrosPackageUpdates=false"
    has "$data/$SKEL" "DisableAutomaticSecurityUpdates=false"
}

check_hook() {
    command=$(sed -n 's/^post-invoke=//p' "$data/$HOOK")
    [ -n "$command" ] || fail "$HOOK has no post-invoke"
    mkdir -p "$work/hookroot/usr/share/applications"
    env -i PATH=/usr/bin:/bin DPKG_ROOT="$work/hookroot" sh -c "$command" ||
        fail "the post-invoke command failed"
    [ -f "$work/hookroot/usr/share/applications/.garcon_trigger" ] ||
        fail "post-invoke did not touch .garcon_trigger"
    rm -rf "$work/hookroot/usr/share/applications"
    env -i PATH=/usr/bin:/bin DPKG_ROOT="$work/hookroot" sh -c "$command" ||
        fail "post-invoke fails when /usr/share/applications is missing"
}

check_environment() {
    has "$data/$ENVIRONMENT_D" "BROWSER=/usr/bin/garcon-url-handler"
    got=$(env -i sh -c ". '$data/$PROFILE_D'; echo \"\$BROWSER\"")
    [ "$got" = /usr/bin/garcon-url-handler ] || fail "profile.d sets BROWSER to '$got'"
    got=$(env -i BROWSER=firefox sh -c ". '$data/$PROFILE_D'; echo \"\$BROWSER\"")
    [ "$got" = firefox ] || fail "profile.d overrides a user's BROWSER with '$got'"
    got=$(env -i sh -c "set -u; . '$data/$PROFILE_D'; sh -c 'echo \"\$BROWSER\"'")
    [ "$got" = /usr/bin/garcon-url-handler ] || fail "profile.d does not export BROWSER"
}

check_ansible() {
    grep -qF 'CALLBACK_NAME = "garcon"' "$data/$ANSIBLE" || fail "callback is not named garcon"
    grep -qF 'MESSAGE TO GARCON: TASK_FAILED' "$data/$ANSIBLE" ||
        fail "callback never prints the TASK_FAILED marker"
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import ast, sys; ast.parse(open(sys.argv[1]).read())' "$data/$ANSIBLE" ||
            fail "$ANSIBLE is not valid Python"
    else
        echo "skip $current-syntax: python3 is not installed"
    fi
}

check_unit_verify() {
    if ! command -v systemd-analyze >/dev/null 2>&1; then
        echo "skip $current: systemd-analyze is not installed"
        return 0
    fi
    # systemd-analyze --user cannot take --root, so verify a copy whose garcon path points at a
    # stand-in executable; the drop-in sits next to it so it is verified too.
    mkdir -p "$work/verify/cros-garcon.service.d" "$work/verify/bin" "$work/runtime"
    chmod 0700 "$work/runtime"
    printf '#!/bin/sh\nexit 0\n' >"$work/verify/bin/garcon"
    printf '#!/bin/sh\nexit 0\n' >"$work/verify/bin/guest_service_failure_notifier"
    chmod 0755 "$work/verify/bin/garcon" "$work/verify/bin/guest_service_failure_notifier"
    sed "s|/opt/google/cros-containers/bin|$work/verify/bin|g" "$data/$UNIT" \
        >"$work/verify/cros-garcon.service"
    cp "$data/$OVERRIDE" "$work/verify/cros-garcon.service.d/"
    (cd "$work/verify" && XDG_RUNTIME_DIR="$work/runtime" \
        systemd-analyze --user --man=no verify ./cros-garcon.service) >"$work/out" 2>&1 ||
        fail "systemd-analyze verify: $(cat "$work/out")"
    [ ! -s "$work/out" ] || fail "systemd-analyze verify complained: $(cat "$work/out")"
}

check_lintian() {
    if ! command -v lintian >/dev/null 2>&1; then
        echo "skip $current: lintian is not installed (apt-get install lintian)"
        return 0
    fi
    # Errors and warnings fail; the package's overrides document the deliberate ones.
    lintian --fail-on error,warning "$deb" \
        >"$work/out" 2>&1 || fail "lintian: $(grep -v '^N:' "$work/out")"
}

all="control files modes conffiles unit handlers maintscripts polkit portal desktop hook environment ansible unit-verify lintian"
[ $# -gt 0 ] || set -- $all
for current in "$@"; do
    case " $all " in
    *" $current "*) ;;
    *) die "unknown check '$current' (known: $all)" ;;
    esac
    "check_$(echo "$current" | tr - _)"
    echo "ok $current"
done
