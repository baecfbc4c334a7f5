# Dockerfile for the ukvm unikernel app.ukvm, written by ukrun @VERSION@ (ukrun dockerfile).
# Build it from the build context (the directory given to docker build) holding
#     ukvm-bin
#     app.ukvm
#     ukrun-@VERSION@.tar.gz (ukrun's source distribution)
# as in: docker build -t IMAGE -f Dockerfile .
# (--build-arg ALPINE_VERSION=X.Y picks another Alpine release.)
# Run it with the flags this host needs:
#     docker run --rm $(ukrun docker-args ukvm) IMAGE [ARG...]

ARG ALPINE_VERSION=3.20

# Stage 1: compile ukrun's wheel against musl and install it in a virtual environment.
FROM alpine:${ALPINE_VERSION} AS ukrun-build
RUN apk add --no-cache python3 python3-dev gcc musl-dev linux-headers libffi-dev
COPY ["ukrun-@VERSION@.tar.gz", "/src/ukrun-@VERSION@.tar.gz"]
# pip writes ukrun's first line "#!python -S" as "#!PYTHON", without the -S (pip issue
# 10661), and site would then cost every start of ukrun 1-3 ms: the sed below gives the
# -S back (a no-op if it is there), and the build stops if that line is anything else.
RUN python3 -m venv /opt/ukrun \
    && /opt/ukrun/bin/pip wheel --no-cache-dir --wheel-dir /wheels /src/ukrun-@VERSION@.tar.gz \
    && /opt/ukrun/bin/pip install --no-cache-dir --no-index --find-links /wheels ukrun \
    && script=/opt/ukrun/bin/ukrun \
    && { line="$(head -n 1 "$script")"; \
         { [ ${#line} -gt 124 ] || sed -i '1s|^#!/opt/ukrun/bin/python[0-9.]*$|& -S|' "$script"; } \
         && head -n 1 "$script" | grep -qx '#!/opt/ukrun/bin/python[0-9.]* -S' \
         || { echo "ukrun: error: ${script:-ukrun} begins '$(head -n 1 "$script")'," \
                "not #!PYTHON (at most 124 bytes) or #!PYTHON -S as this step expects" >&2; exit 1; }; }

# Stage 2: the same Alpine (so the same python3) with ukrun and the unikernel.
FROM alpine:${ALPINE_VERSION}
RUN apk add --no-cache python3
COPY --from=ukrun-build /opt/ukrun /opt/ukrun
ENV PATH="/opt/ukrun/bin:${PATH}"
COPY ["ukvm-bin", "/unikernel/ukvm"]
COPY ["app.ukvm", "/unikernel/app.ukvm"]
# Exec form, no shell: ukrun is PID 1 and execs the tender (or the unikernel), so
# the SIGTERM of `docker stop` reaches it.
ENTRYPOINT ["ukrun", "ukvm", "--mem=64", "-v", "/unikernel/app.ukvm"]
# The unikernel's arguments: `docker run IMAGE ARG...` replaces them.
CMD ["--ipv4-only=true", "a \"quoted\" $word", "--"]
