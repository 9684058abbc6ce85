# Send URLs opened from login shells (Chrome OS terminal) to the Chrome OS browser,
# unless the user chose another browser.
if [ -z "${BROWSER:-}" ]; then
    BROWSER=/usr/bin/garcon-url-handler
    export BROWSER
fi
