# Dockerfile for the hvt unikernel app.hvt, written by ukrun @VERSION@ (ukrun dockerfile).
# Build it from the build context (the directory given to docker build) holding
#     solo5-hvt
#     app.hvt
# as in: docker build -t IMAGE -f Dockerfile .
# debian:bookworm-slim must provide ukrun on PATH.
# Run it with the flags this host needs:
#     docker run --rm $(ukrun docker-args hvt) IMAGE [ARG...]

FROM debian:bookworm-slim
COPY ["solo5-hvt", "/unikernel/solo5-hvt"]
COPY ["app.hvt", "/unikernel/app.hvt"]
# Exec form, no shell: ukrun is PID 1 and execs the tender (or the unikernel), so
# the SIGTERM of `docker stop` reaches it.
ENTRYPOINT ["ukrun", "hvt", "--tender", "/unikernel/solo5-hvt", "/unikernel/app.hvt"]
# The unikernel's arguments: `docker run IMAGE ARG...` replaces them.
CMD []
