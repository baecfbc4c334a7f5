# Dockerfile for the spt unikernel app.spt, written by ukrun @VERSION@ (ukrun dockerfile).
# Build it from the build context (the directory given to docker build) holding
#     solo5-spt
#     app.spt
# as in: docker build -t IMAGE -f Dockerfile .
# debian:bookworm-slim must provide ukrun on PATH.
# Run it with the flags this host needs:
#     docker run --rm $(ukrun docker-args spt) IMAGE [ARG...]

FROM debian:bookworm-slim
COPY ["solo5-spt", "/unikernel/solo5-spt"]
COPY ["app.spt", "/unikernel/app.spt"]
# Exec form, no shell: ukrun is PID 1 and execs the tender (or the unikernel), so
# the SIGTERM of `docker stop` reaches it.
ENTRYPOINT ["ukrun", "spt", "--tender", "/unikernel/solo5-spt", "/unikernel/app.spt"]
# The unikernel's arguments: `docker run IMAGE ARG...` replaces them.
CMD []
