# Dockerfile for the qemu unikernel app.virtio, written by ukrun @VERSION@ (ukrun dockerfile).
# Build it from the build context (the directory given to docker build) holding
#     app.virtio
# as in: docker build -t IMAGE -f Dockerfile .
# debian:bookworm-slim must provide ukrun on PATH and qemu-system-x86_64.
# Run it with the flags this host needs:
#     docker run --rm $(ukrun docker-args qemu) IMAGE [ARG...]

FROM debian:bookworm-slim
COPY ["app.virtio", "/unikernel/app.virtio"]
# Exec form, no shell: ukrun is PID 1 and execs the tender (or the unikernel), so
# the SIGTERM of `docker stop` reaches it.
ENTRYPOINT ["ukrun", "qemu", "/unikernel/app.virtio"]
# The unikernel's arguments: `docker run IMAGE ARG...` replaces them.
CMD []
