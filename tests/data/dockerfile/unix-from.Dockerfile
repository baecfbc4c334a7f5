# Dockerfile for the unix unikernel app, written by ukrun @VERSION@ (ukrun dockerfile).
# Build it from the build context (the directory given to docker build) holding
#     app
# as in: docker build -t IMAGE -f Dockerfile .
# debian:bookworm-slim must provide ukrun on PATH.
# Run it with the flags this host needs:
#     docker run --rm $(ukrun docker-args unix) IMAGE [ARG...]

FROM debian:bookworm-slim
COPY ["app", "/unikernel/app"]
# Exec form, no shell: ukrun is PID 1 and execs the tender (or the unikernel), so
# the SIGTERM of `docker stop` reaches it.
ENTRYPOINT ["ukrun", "unix", "/unikernel/app"]
# The unikernel's arguments: `docker run IMAGE ARG...` replaces them.
CMD []
