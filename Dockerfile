# pgsub in a small runtime image that runs as a non-root user.
#
#   docker build -t pgsub .
#   docker run --rm pgsub --help
#   docker run --rm -e PGSUB_SOURCE='host=db1 dbname=app user=repl' \
#       -e PGSUB_DEST='postgres://avnadmin@dest:5432/defaultdb?sslmode=require' \
#       -v "$PWD/pgpass:/home/nonroot/.pgpass:ro" \
#       pgsub sync --publication pub_all_tables --slot pgsub --create-slot
#
# The build stage compiles the release binary (without the failpoints feature the tests
# use); the runtime stage is distroless "cc" (glibc, libgcc, CA certificates for
# sslrootcert=system, no shell, no package manager), as user 65532 "nonroot".
# `pgsub demo` is not for this image: it needs the PostgreSQL server binaries.

FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
COPY src ./src
COPY benches ./benches
COPY examples ./examples
COPY tests ./tests
RUN cargo build --release --locked --bin pgsub \
 && strip target/release/pgsub

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/pgsub /usr/local/bin/pgsub
USER nonroot:nonroot
WORKDIR /home/nonroot
# Metrics, when --metrics-addr 0.0.0.0:9187 is given.
EXPOSE 9187
ENTRYPOINT ["/usr/local/bin/pgsub"]
CMD ["--help"]
