# cosigner container image: a static cgo binary (SQLite through mattn/go-sqlite3) on an empty
# (`scratch`) runtime, run as uid 10001. See docs/container.md.
#   docker build -t cosigner .
#   docker run --rm -it -v cosigner-data:/data -e COSIGNER_PASSPHRASE_FILE=/run/secrets/pass … cosigner init
#   docker run -d --name cosigner -v cosigner-data:/data -p 127.0.0.1:8080:8080 \
#     -e COSIGNER_PASSPHRASE_FILE=… -e COSIGNER_NETWORK=… -e COSIGNER_DESCRIPTOR='wsh(…)#…' \
#     -e COSIGNER_RELAYS=wss://… -e COSIGNER_ELECTRUM_URL=ssl://…:50002 cosigner
#   docker exec cosigner cosigner bunker-uri
# It builds with the legacy builder and with BuildKit; no build stage needs more than the Go
# module proxy (no apt, nothing else is downloaded).

FROM golang:1.26-bookworm AS build

# The build machine's extra trusted certificates (PEM, e.g. a corporate TLS proxy's CA) and its Go
# module settings; see scripts/container-test.sh. They are used by this stage only (a bundle of
# its own, SSL_CERT_FILE): the runtime image gets Debian's CA bundle as shipped.
ARG EXTRA_CA_CERTS=""
ARG GOPROXY
ARG GOSUMDB
ARG GOPRIVATE
ARG GONOSUMDB
ARG GONOPROXY
ARG GOINSECURE
ARG GOFLAGS
RUN { cat /etc/ssl/certs/ca-certificates.crt; printf '%s\n' "$EXTRA_CA_CERTS"; } >/usr/local/share/build-ca.pem
ENV SSL_CERT_FILE=/usr/local/share/build-ca.pem \
    CGO_ENABLED=1 \
    TAGS="netgo osusergo sqlite_omit_load_extension"

WORKDIR /src
COPY go.mod go.sum ./
# Modules, and SQLite compiled once into the build cache of this layer: a source change rebuilds
# only the project's packages.
RUN go mod download && go build -trimpath -tags "$TAGS" github.com/mattn/go-sqlite3
COPY . .
# Static: pure-Go DNS and user lookup (netgo, osusergo), no dlopen (sqlite_omit_load_extension).
RUN go build -trimpath -tags "$TAGS" -ldflags '-s -w -linkmode external -extldflags "-static"' \
      -o /rootfs/usr/local/bin/cosigner ./cmd/cosigner \
 && /rootfs/usr/local/bin/cosigner --help >/dev/null
# The runtime's few files: Debian's CA bundle as shipped (SSL_CERT_FILE above is this stage's
# own), the user in /etc/passwd and /etc/group, /tmp, and the data directory.
RUN mkdir -p /rootfs/etc/ssl/certs /rootfs/tmp /data-dir \
 && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ \
 && echo 'cosigner:x:10001:10001:cosigner:/data:/sbin/nologin' >/rootfs/etc/passwd \
 && echo 'cosigner:x:10001:' >/rootfs/etc/group \
 && chmod 1777 /rootfs/tmp && chmod 0700 /data-dir

FROM scratch
COPY --from=build /rootfs/ /
# COPY makes files root's; the data directory is the cosigner user's (a named volume mounted on
# /data starts as a copy of it, owner included). --chown reaches the directory itself only when
# COPY creates it, hence its own source outside /rootfs.
COPY --from=build --chown=10001:10001 /data-dir /data
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
ENV PATH=/usr/local/bin \
    COSIGNER_DATA_DIR=/data \
    COSIGNER_HEALTH_ADDR=0.0.0.0:8080 \
    COSIGNER_LOG_FORMAT=json
# /healthz, /status and /metrics. /status shows the wallet's balance and coins: publish it on the
# host's loopback only (-p 127.0.0.1:8080:8080), or on a network only the monitoring can reach.
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 CMD ["/usr/local/bin/cosigner", "health"]
ENTRYPOINT ["/usr/local/bin/cosigner"]
CMD ["run"]
