#!/bin/sh
# Make the secrets deploy/compose.yaml mounts, in deploy/secrets/ (or the directory given):
#
#   cluster-token          the peers' shared secret (a compose secret: /run/secrets/...)
#   n1/ n2/ n3/            each member's ca.crt, tls.crt, tls.key (mounted at /etc/paxlock/tls)
#   auth.toml              the principals for --auth: one, "admin", with every role
#   admin.token            admin's bearer token, for your clients (never mounted)
#   ca.crt                 the CA your clients trust (--ca); ca.key signs: keep it safe
#
# A throwaway CA for one Docker host, made with openssl; use your own CA in production. The
# files are private to their owner; the containers run as uid 10001, so run this as root, or
# chown what they mount afterwards (the command is printed).
set -eu
out=${1:-$(dirname "$0")/secrets}
members="n1 n2 n3"
days=825
umask 077
if [ -e "$out/ca.key" ]; then
    echo "compose-secrets: $out already has a CA; remove $out to start over" >&2
    exit 1
fi
mkdir -p "$out"
openssl rand -hex 32 > "$out/cluster-token"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$days" \
    -subj "/CN=paxlock compose CA" -keyout "$out/ca.key" -out "$out/ca.crt" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
for member in $members; do
    dir="$out/$member"
    mkdir -p "$dir"
    cp "$out/ca.crt" "$dir/ca.crt"
    # Server for clients and peers, client on the peer links (mutual TLS); named as the
    # compose network and the host reach it.
    printf '%s\n' "subjectAltName=DNS:$member,DNS:localhost,IP:127.0.0.1" \
        "extendedKeyUsage=serverAuth,clientAuth" "keyUsage=critical,digitalSignature" \
        "basicConstraints=critical,CA:FALSE" "authorityKeyIdentifier=keyid" \
        "subjectKeyIdentifier=hash" > "$dir/extensions"
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$member" \
        -keyout "$dir/tls.key" -out "$dir/tls.csr" 2>/dev/null
    openssl x509 -req -in "$dir/tls.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" \
        -CAcreateserial -days "$days" -extfile "$dir/extensions" -out "$dir/tls.crt" 2>/dev/null
    rm "$dir/tls.csr" "$dir/extensions"
done
token=$(openssl rand -hex 32)
printf '%s\n' "$token" > "$out/admin.token"
digest=$(printf '%s' "$token" | openssl dgst -sha256 -r | cut -d' ' -f1)
cat > "$out/auth.toml" <<EOF
# Principals for paxlock serve --auth: the token's SHA-256, never the token.
[principals.admin]
token_sha256 = "$digest"
roles = [{ prefix = "", role = "admin" }]
EOF
mounted="$out/cluster-token $out/auth.toml"
for member in $members; do mounted="$mounted $out/$member"; done
chmod 0644 "$out/ca.crt"  # public: what clients trust
if [ "$(id -u)" = 0 ]; then
    # shellcheck disable=SC2086  # word splitting wanted: a list of paths
    chown -R 10001:10001 $mounted
    if [ -n "${SUDO_UID:-}" ]; then  # what is not mounted stays yours
        chown "$SUDO_UID:${SUDO_GID:-$SUDO_UID}" "$out" "$out/admin.token" "$out/ca.crt" \
            "$out/ca.key" "$out/ca.srl"
    fi
    echo "compose-secrets: made $out (mounted files owned by uid 10001, the image's user)"
else
    echo "compose-secrets: made $out; the containers (uid 10001) read them once you run:"
    echo "  sudo chown -R 10001:10001 $mounted"
fi
