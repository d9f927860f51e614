#!/bin/sh
# Regenerates the test certificates (committed, used only by tests on loopback):
#   ca.pem / ca-key.pem          the test CA
#   server.pem / server-key.pem  a server certificate for 127.0.0.1, ::1 and localhost, signed by ca.pem
#   other-ca.pem                 an unrelated CA, for "wrong CA" and "CA rotated" tests
# Valid for 20 years. Run from anywhere: sh tests/certs/regenerate.sh
set -eu
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7300 \
  -subj "/CN=kubernetes-agent test CA" -keyout ca-key.pem -out ca.pem \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
  -keyout "$tmp/server-key.pem" -out "$tmp/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' > "$tmp/ext"
openssl x509 -req -in "$tmp/server.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 7300 \
  -extfile "$tmp/ext" -out server.pem 2>/dev/null
openssl pkcs8 -topk8 -nocrypt -in "$tmp/server-key.pem" -out server-key.pem
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7300 \
  -subj "/CN=unrelated test CA" -keyout "$tmp/other-key.pem" -out other-ca.pem \
  -addext "basicConstraints=critical,CA:TRUE" 2>/dev/null
rm -f ca.srl
echo "wrote ca.pem ca-key.pem server.pem server-key.pem other-ca.pem"
