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

FROM golang:1.26-bookworm AS modules

# The build machine's extra trusted certificates (PEM, e.g. a corporate TLS proxy's CA) and its Go
# module settings; see scripts/container-test.sh. They are used by the build stages only (a bundle
# of their own, SSL_CERT_FILE; the Go settings as ENV of the build stages): the runtime image gets
# Debian's CA bundle as shipped and none of these.
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
    GOPROXY=$GOPROXY GOSUMDB=$GOSUMDB GOPRIVATE=$GOPRIVATE GONOSUMDB=$GONOSUMDB \
    GONOPROXY=$GONOPROXY GOINSECURE=$GOINSECURE GOFLAGS=$GOFLAGS \
    CGO_ENABLED=1 \
    TAGS="netgo osusergo sqlite_omit_load_extension"
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download

# The packages of other modules the binary imports, listed from the source (fast).
FROM modules AS deps
COPY . .
RUN go list -deps -tags "$TAGS" -f '{{if not .Standard}}{{if not .Module.Main}}{{.ImportPath}}{{end}}{{end}}' \
      ./cmd/cosigner >/deps.txt

# They (SQLite included) are compiled into this layer's build cache, which stays while the list
# does: a change to the project's own source recompiles only its own packages.
FROM modules AS build
COPY --from=deps /deps.txt /deps.txt
RUN go build -trimpath -tags "$TAGS" $(cat /deps.txt)
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
