# syntax=docker/dockerfile:1
# cosigner container: a multi-stage cgo build (SQLite via mattn/go-sqlite3), run as a non-root user.
#   docker build -t cosigner .
#   docker run -d -v cosigner-data:/data -e COSIGNER_PASSPHRASE_FILE=/run/secrets/pass \
#     -e COSIGNER_DESCRIPTOR='wsh(sortedmulti(…))#…' -e COSIGNER_RELAYS=wss://… \
#     -e COSIGNER_ELECTRUM_URL=tcp://electrum:50001 cosigner
# Other subcommands: docker run --rm -v cosigner-data:/data --entrypoint cosigner cosigner init

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=1 go build -trimpath -ldflags="-s -w" -o /out/cosigner ./cmd/cosigner

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --create-home cosigner
COPY --from=build /out/cosigner /usr/local/bin/cosigner
USER cosigner
WORKDIR /data
VOLUME ["/data"]
ENV COSIGNER_DATA_DIR=/data \
    COSIGNER_HEALTH_ADDR=127.0.0.1:8080 \
    COSIGNER_LOG_FORMAT=json
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 CMD ["cosigner", "health"]
ENTRYPOINT ["cosigner", "run"]
