#!/usr/bin/env bash
# Makes a local CA and a server certificate for ml_api_logger with openssl: the steps of the
# ExtraHop page "Export logs for Machine Learning Service API interactions", without prompts.
#
#   certs/make-certs.sh [--out DIR] [--org NAME] [--force] HOSTNAME IP
#
# HOSTNAME and IP are the name and address the sensor uses to reach this server; both go into the
# certificate's subjectAltName. Writes into DIR (default: this script's directory):
#
#   serverca.key  serverca.crt        the CA (keep serverca.key private, or delete it)
#   server.key    server.crt          what the daemon serves (LOGGER_KEY, LOGGER_CERT)
#   trusted-server.pem                server.key + server.crt + serverca.crt: upload to the sensor
#   server.req    serverca.srl        the signing request and the CA's serial number file
#
# Keys and trusted-server.pem are mode 0600. Refuses to overwrite existing files without --force.
set -euo pipefail

usage() {
  echo "usage: $0 [--out DIR] [--org NAME] [--force] HOSTNAME IP" >&2
  exit 2
}

out=$(cd "$(dirname "$0")" && pwd)
org="ml_api_logger"
force=0
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) [ $# -ge 2 ] || usage; out=$2; shift 2 ;;
    --out=*) out=${1#--out=}; shift ;;
    --org) [ $# -ge 2 ] || usage; org=$2; shift 2 ;;
    --org=*) org=${1#--org=}; shift ;;
    --force) force=1; shift ;;
    -h | --help) sed -n '2,15p' "$0"; exit 0 ;;
    --) shift; args+=("$@"); break ;;
    -*) echo "$0: unknown option $1" >&2; usage ;;
    *) args+=("$1"); shift ;;
  esac
done
[ ${#args[@]} -eq 2 ] || usage
host=${args[0]}
ip=${args[1]}
case "$host" in
  "" | *[!A-Za-z0-9.-]*) echo "$0: $host: not a DNS name" >&2; exit 2 ;;
esac
if ! [[ $ip =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ || $ip =~ ^[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*$ ]]; then
  echo "$0: $ip: not an IP address" >&2
  exit 2
fi
command -v openssl >/dev/null || { echo "$0: openssl not found; install it (apt-get install openssl)" >&2; exit 1; }

mkdir -p -m 700 "$out"
cd "$out"
if [ "$force" -eq 0 ]; then
  for f in serverca.key serverca.crt server.key server.crt trusted-server.pem; do
    if [ -e "$f" ]; then
      echo "$0: $out/$f already exists; use --force to overwrite" >&2
      exit 1
    fi
  done
fi

# Every file is created private; the two certificates are opened up at the end.
umask 077
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Extensions. The page signs with subjectAltName only; a CA marked as one and a server
# certificate limited to TLS server use are what strict clients (and Go's crypto/x509) expect.
cat >"$work/ca.cnf" <<EOF
[req]
distinguished_name = dn
x509_extensions = v3_ca
prompt = no
[dn]
O = $org
CN = $org CA for $host
[v3_ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
EOF
cat >"$work/server.cnf" <<EOF
[req]
distinguished_name = dn
req_extensions = SAN
prompt = no
[dn]
O = $org
CN = $host
[SAN]
subjectAltName = DNS:$host, IP:$ip
EOF
cat >"$work/server.ext" <<EOF
subjectAltName = DNS:$host, IP:$ip
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF

# 1. The CA key. The page encrypts it (openssl genrsa -aes256 ...), which asks for a passphrase
#    here and again at signing. It is left unencrypted so this script runs unattended: keep
#    serverca.key private, encrypt it afterwards (openssl pkey -aes256), or delete it once the
#    server certificate is signed.
openssl genrsa -out serverca.key 4096 2>/dev/null

# 2. The CA certificate, ten years.
openssl req -new -x509 -key serverca.key -out serverca.crt -days 3650 -sha256 \
  -config "$work/ca.cnf"

# 3. The server key (RSA 4096, unencrypted: the daemon cannot read an encrypted key) and a
#    signing request with the subjectAltName.
openssl req -new -nodes -newkey rsa:4096 -keyout server.key -out server.req -batch \
  -config "$work/server.cnf" -reqexts SAN 2>/dev/null

# 4. The server certificate, signed by the CA with the subjectAltName, ten years.
openssl x509 -req -in server.req -CA serverca.crt -CAkey serverca.key -CAcreateserial \
  -out server.crt -days 3650 -sha256 -extfile "$work/server.ext" 2>/dev/null

# 5. The bundle the sensor takes: key, certificate, CA certificate.
cat server.key server.crt serverca.crt >trusted-server.pem

chmod 600 serverca.key server.key trusted-server.pem
chmod 644 serverca.crt server.crt
openssl verify -CAfile serverca.crt server.crt >/dev/null

cat <<EOF
Wrote $out: serverca.key serverca.crt server.key server.crt trusted-server.pem
Certificate for DNS:$host, IP:$ip, valid until $(openssl x509 -in server.crt -noout -enddate | cut -d= -f2).

Serve it:
  LOGGER_CERT=$out/server.crt LOGGER_KEY=$out/server.key ml_api_logger >> extrahop-ade-log.json
Check it from here:
  curl --cacert $out/serverca.crt https://$host:8443/log --data-binary @examples/records/request.json
On the sensor: upload $out/trusted-server.pem as a trusted certificate, then in the running
config's "hopcloud" section set
  "api_logging_target": { "enabled": true, "hostname": "$host", "port": 8443 }
EOF
