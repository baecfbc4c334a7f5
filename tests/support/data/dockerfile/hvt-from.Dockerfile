# Dockerfile for the hvt unikernel app.hvt, written by ukrun @VERSION@ (ukrun dockerfile).
# Build it from the build context (the directory given to docker build) holding
#     solo5-hvt
#     app.hvt
# as in: docker build -t IMAGE -f Dockerfile .
# debian:bookworm-slim must provide ukrun on PATH,
# and sh, sed, head, grep and readlink for the first step.
# Run it with the flags this host needs:
#     docker run --rm $(ukrun docker-args hvt) IMAGE [ARG...]

FROM debian:bookworm-slim
# pip writes ukrun's first line "#!python -S" as "#!PYTHON", without the -S (pip issue
# 10661), and site would then cost every start of ukrun 1-3 ms: the sed below gives the
# -S back (a no-op if it is there); where it cannot, the build goes on with a note (the image
# works, only slower), and it stops if the base has no ukrun on PATH.
RUN script="$(readlink -f "$(command -v ukrun)")" && [ -n "$script" ] \
    || { echo "ukrun: error: debian:bookworm-slim has no ukrun on PATH: install ukrun in it" \
              "(pip install ukrun) or build without --from" >&2; exit 1; }; \
    { line="$(head -n 1 "$script")"; \
      { [ ${#line} -gt 124 ] || sed -i '1s|^#!/[^ ]*/python[0-9.]*$|& -S|' "$script"; } \
      && head -n 1 "$script" | grep -qx '#!/[^ ]*/python[0-9.]* -S' \
      || echo "ukrun: note: ${script:-ukrun} begins '$(head -n 1 "$script")'," \
             "not #!PYTHON (at most 124 bytes) or #!PYTHON -S: left as it is (it starts with site, 1-3 ms slower)" >&2; }
COPY ["solo5-hvt", "/unikernel/solo5-hvt"]
COPY ["app.hvt", "/unikernel/app.hvt"]
# Exec form, no shell: ukrun is PID 1 and execs the tender (or the unikernel), so
# the SIGTERM of `docker stop` reaches it.
ENTRYPOINT ["ukrun", "hvt", "--tender", "/unikernel/solo5-hvt", "/unikernel/app.hvt"]
# The unikernel's arguments: `docker run IMAGE ARG...` replaces them.
CMD []
