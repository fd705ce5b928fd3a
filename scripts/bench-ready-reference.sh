#!/bin/sh
# The reference for scripts/bench-ready: what docker:dind's entrypoint does before a
# client can talk to it over TLS, as a small script (not used by dind itself).
#
# docker:dind (dockerd-entrypoint.sh) makes an RSA-4096 key for the CA, the server
# and the client with openssl, signs their certificates, then starts dockerd through
# the old hack/dind script (here scripts/bench-reference.sh, its re-statement) with
# --host unix socket and tcp://0.0.0.0:2376 --tlsverify. With DOCKER_TLS_CERTDIR
# empty it listens on 2375 instead (no certificates; docker:dind passes no --tls=false).
set -eu
dir=${DOCKER_TLS_CERTDIR-}
here=$(dirname "$0")
days=825

key() { [ -s "$1" ] || openssl genrsa -out "$1" 4096 2>/dev/null; }

if [ -n "$dir" ]; then
	mkdir -p "$dir/ca" "$dir/server" "$dir/client"
	key "$dir/ca/key.pem"
	openssl req -new -key "$dir/ca/key.pem" -out "$dir/ca/cert.pem" \
		-subj '/CN=docker:dind CA' -x509 -days "$days"
	key "$dir/server/key.pem"
	openssl req -new -key "$dir/server/key.pem" -out "$dir/server/csr.pem" \
		-subj '/CN=docker:dind server'
	printf '[ x509_exts ]\nsubjectAltName = DNS:docker,DNS:localhost,DNS:%s,IP:127.0.0.1,IP:%s\n' \
		"$(hostname)" "$(hostname -i | cut -d' ' -f1)" >"$dir/server/openssl.cnf"
	openssl x509 -req -in "$dir/server/csr.pem" -CA "$dir/ca/cert.pem" \
		-CAkey "$dir/ca/key.pem" -CAcreateserial -out "$dir/server/cert.pem" -days "$days" \
		-extfile "$dir/server/openssl.cnf" -extensions x509_exts 2>/dev/null
	cp "$dir/ca/cert.pem" "$dir/server/ca.pem"
	key "$dir/client/key.pem"
	chmod 0644 "$dir/client/key.pem"
	openssl req -new -key "$dir/client/key.pem" -out "$dir/client/csr.pem" \
		-subj '/CN=docker:dind client'
	printf '[ x509_exts ]\nextendedKeyUsage = clientAuth\n' >"$dir/client/openssl.cnf"
	openssl x509 -req -in "$dir/client/csr.pem" -CA "$dir/ca/cert.pem" \
		-CAkey "$dir/ca/key.pem" -CAcreateserial -out "$dir/client/cert.pem" -days "$days" \
		-extfile "$dir/client/openssl.cnf" -extensions x509_exts 2>/dev/null
	cp "$dir/ca/cert.pem" "$dir/client/ca.pem"
	set -- dockerd --host=unix:///var/run/docker.sock --host=tcp://0.0.0.0:2376 --tlsverify \
		--tlscacert "$dir/server/ca.pem" --tlscert "$dir/server/cert.pem" \
		--tlskey "$dir/server/key.pem" "$@"
else
	set -- dockerd --host=unix:///var/run/docker.sock --host=tcp://0.0.0.0:2375 "$@"
fi
find /run /var/run -iname 'docker*.pid' -delete || :
exec "$here/bench-reference.sh" "$@"
