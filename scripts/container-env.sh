# Sourced by the container scripts: the names they share, defined once.
# The base image scripts/bootstrap-base.sh makes where no registry serves debian:bookworm-slim.
LOCAL_BASE_IMAGE=tiny-imagenet/bookworm-base:12
# The compose files of the CPU stack (what CI builds and the container test runs).
COMPOSE_CPU_FILES=(-f docker-compose.yml -f docker/compose.cpu.yml)

# Prints the base image a build can use here: debian:bookworm-slim when it is here or can be
# pulled, else the bootstrapped base when it exists. Returns 1 (printing nothing) when neither.
find_base_image() {
  if docker image inspect debian:bookworm-slim >/dev/null 2>&1 \
    || timeout 60 docker pull -q debian:bookworm-slim >/dev/null 2>&1; then
    echo debian:bookworm-slim
  elif docker image inspect "$LOCAL_BASE_IMAGE" >/dev/null 2>&1; then
    echo "$LOCAL_BASE_IMAGE"
  else
    return 1
  fi
}

# What a build on this host needs, exported for compose:
# - BASE_IMAGE: left alone when set; else find_base_image's. Returns 1 (with a message) when
#   there is none.
# - EXTRA_CA_CERTS: left alone when set; else the host's locally added CAs
#   (/usr/local/share/ca-certificates/*.crt), which hosts behind TLS-intercepting proxies need
#   for pip inside the build. Used by the build stages only, never kept in an image.
prepare_container_build() {
  if [[ -z "${BASE_IMAGE:-}" ]]; then
    if ! BASE_IMAGE=$(find_base_image); then
      echo "no base image: debian:bookworm-slim cannot be pulled here and $LOCAL_BASE_IMAGE" \
        "does not exist; make it with: sudo ./scripts/bootstrap-base.sh" >&2
      return 1
    fi
    export BASE_IMAGE
  fi
  if [[ -z "${EXTRA_CA_CERTS:-}" ]] && compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
    EXTRA_CA_CERTS=$(cat /usr/local/share/ca-certificates/*.crt)
    export EXTRA_CA_CERTS
  fi
}

# True when a Docker engine and the compose plugin answer.
engine_answers() {
  command -v docker >/dev/null && docker compose version >/dev/null 2>&1 && docker info >/dev/null 2>&1
}
