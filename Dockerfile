# A container with one quorumkv node. Build and run (one container per host):
#   docker build -t quorumkv .
#   docker run -d --name qkv1 --network host \
#     -v /var/lib/quorumkv:/var/lib/quorumkv -v /etc/quorumkv:/etc/quorumkv:ro quorumkv
# The node reads /etc/quorumkv/node.toml (deploy/node.toml.example);
# `docker stop` sends SIGTERM: a leader hands over, then the node exits 0.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p quorumkv --bin quorumkv

FROM debian:bookworm-slim
RUN useradd --system --home /var/lib/quorumkv --shell /usr/sbin/nologin quorumkv \
    && install -d -o quorumkv -g quorumkv -m 0700 /var/lib/quorumkv
COPY --from=build /src/target/release/quorumkv /usr/local/bin/quorumkv
USER quorumkv
VOLUME /var/lib/quorumkv
EXPOSE 7001 8001
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/quorumkv"]
CMD ["serve", "--config", "/etc/quorumkv/node.toml"]
