# Shared helpers for the packaging scripts (sourced, not executed).

# Prints the workspace version from the root Cargo.toml ([workspace.package] version).
workspace_version() {
    sed -n '/^\[workspace\.package\]/,/^\[/ s/^version *= *"\([^"]*\)".*/\1/p' "$1/Cargo.toml"
}

# Prints a timestamp for reproducible archives: $SOURCE_DATE_EPOCH, else the last commit's time,
# else now.
source_date_epoch() {
    if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
        echo "$SOURCE_DATE_EPOCH"
    elif git -C "$1" log -1 --format=%ct 2>/dev/null; then
        :
    else
        date +%s
    fi
}

die() {
    echo "$(basename "$0"): $*" >&2
    exit 1
}
