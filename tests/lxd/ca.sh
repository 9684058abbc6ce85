#!/bin/bash
# Creates (once) a self-signed test CA and a server certificate for 127.0.0.1/localhost under
# $CROSTINI_TEST_CACHE/ca (default /var/cache/crostini-tests/ca) and installs the CA into the system
# trust store (/usr/local/share/ca-certificates + update-ca-certificates).
#
# Output files: ca.crt ca.key server.crt server.key (server.crt is signed by ca.crt, SAN
# IP:127.0.0.1, DNS:localhost). Prints "CA_CHANGED=1" on stdout when the system store was modified
# by this run, "CA_CHANGED=0" otherwise. Idempotent.
set -euo pipefail
. "$(dirname "$(readlink -f "$0")")/common.sh"
require_root
ensure_packages openssl ca-certificates
take_lock ca 120

mkdir -p "$CA_DIR"
chmod 755 "$CACHE_DIR" "$CA_DIR"
cd "$CA_DIR"

if [ ! -s ca.key ] || [ ! -s ca.crt ]; then
	log "creating test CA in $CA_DIR"
	rm -f ca.key ca.crt server.key server.crt
	openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
		-keyout ca.key.tmp -out ca.crt.tmp \
		-subj "/CN=crostini-tests local CA/O=crostini-tests" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null ||
		die "openssl failed to create the CA in $CA_DIR"
	mv ca.key.tmp ca.key
	mv ca.crt.tmp ca.crt
	chmod 600 ca.key
fi

# (Re)issue the server cert when missing, not signed by the current CA, or expiring within 30 days.
if [ ! -s server.key ] || [ ! -s server.crt ] ||
	! openssl verify -CAfile ca.crt server.crt >/dev/null 2>&1 ||
	! openssl x509 -in server.crt -noout -checkend 2592000 >/dev/null 2>&1; then
	log "issuing server certificate for 127.0.0.1/localhost"
	openssl req -newkey rsa:2048 -nodes -sha256 -keyout server.key.tmp -out server.csr \
		-subj "/CN=127.0.0.1" 2>/dev/null || die "openssl failed to create the server key/CSR"
	cat >server.ext <<'EXT'
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost
EXT
	openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 -sha256 \
		-extfile server.ext -out server.crt.tmp 2>/dev/null || die "openssl failed to sign the server certificate"
	mv server.key.tmp server.key
	mv server.crt.tmp server.crt
	chmod 644 server.key # read by the test server, which may run as a non-root user
	rm -f server.csr server.ext
fi

changed=0
if ! cmp -s ca.crt "$SYSTEM_CA_FILE"; then
	log "installing test CA into the system store ($SYSTEM_CA_FILE)"
	install -m 644 ca.crt "$SYSTEM_CA_FILE"
	out=$(timeout 120 update-ca-certificates 2>&1) || die "update-ca-certificates failed: $out"
	changed=1
fi
# Guard against a store that was regenerated without our file (e.g. update-ca-certificates --fresh
# run elsewhere before we installed it): the bundle must contain the CA.
bundle=/etc/ssl/certs/ca-certificates.crt
ca_body=$(sed -n '/BEGIN CERT/,/END CERT/p' ca.crt | grep -v -- '-----' | tr -d '\n')
in_bundle() { tr -d '\n' <"$bundle" | grep -cF "$ca_body" >/dev/null; } # -c: no early exit, no SIGPIPE
if ! in_bundle; then
	log "CA missing from $bundle; running update-ca-certificates"
	out=$(timeout 120 update-ca-certificates 2>&1) || die "update-ca-certificates failed: $out"
	in_bundle || die "test CA still not in $bundle after update-ca-certificates"
	changed=1
fi
echo "CA_CHANGED=$changed"
