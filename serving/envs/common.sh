# Shared helper for the heavy engine environments (vLLM, Chatterbox, ...).
#
# Usage, from an env's build.sh:
#   source "$(dirname "$0")/../common.sh"
#   build_env NAME REQUIREMENTS_FILE [POST_INSTALL_FUNCTION]
#
# Creates (or reuses) a venv at ${TRUNKLINE_ENVS:-~/.cache/trunkline/envs}/NAME.
# A stamp file records the sha256 of the requirements file plus the post-install
# function's source, so the env is rebuilt from scratch whenever either changes
# or a previous build did not finish. POST_INSTALL_FUNCTION, if given, is called
# with the env's python as $1 after `pip install -r` (for uninstalls or
# --no-deps installs that a requirements file cannot express).
#
# Environment knobs:
#   TRUNKLINE_ENVS     parent folder of the envs (default ~/.cache/trunkline/envs)
#   TRUNKLINE_PYTHON   interpreter to create the venv with (default python3.11)
#   FORCE_REBUILD=1    rebuild even if the stamp matches

_env_log() { printf '[env %s] %s\n' "$1" "$2" >&2; }

_env_die() {
    _env_log "$1" "ERROR: $2"
    exit 1
}

# Prints the hash a finished env must carry in its stamp.
env_stamp_hash() {
    local requirements=$1 post_hook=${2:-}
    {
        cat "$requirements"
        if [[ -n $post_hook ]]; then declare -f "$post_hook"; fi
    } | sha256sum | cut -d' ' -f1
}

build_env() {
    local name=$1 requirements=$2 post_hook=${3:-}
    local envs_root=${TRUNKLINE_ENVS:-$HOME/.cache/trunkline/envs}
    local env_dir=$envs_root/$name
    local stamp=$env_dir/.trunkline-stamp
    local base_python=${TRUNKLINE_PYTHON:-python3.11}

    [[ -f $requirements ]] || _env_die "$name" "requirements file not found: $requirements"
    if [[ -n $post_hook ]] && ! declare -F "$post_hook" >/dev/null; then
        _env_die "$name" "post-install function '$post_hook' is not defined"
    fi
    command -v "$base_python" >/dev/null ||
        _env_die "$name" "'$base_python' not found (set TRUNKLINE_PYTHON to a Python 3.11 interpreter)"

    mkdir -p "$envs_root"
    local lock_fd
    # One builder at a time per env: a second caller waits, then sees the stamp.
    exec {lock_fd}>"$envs_root/$name.lock"
    flock "$lock_fd"

    local want
    want=$(env_stamp_hash "$requirements" "$post_hook")
    if [[ ${FORCE_REBUILD:-0} != 1 && -f $stamp && $(cat "$stamp") == "$want" ]]; then
        _env_log "$name" "up to date: $env_dir"
        flock -u "$lock_fd"
        return 0
    fi

    local started=$SECONDS
    _env_log "$name" "building $env_dir from $requirements (this can take minutes)"
    rm -rf "$env_dir"
    "$base_python" -m venv "$env_dir" || _env_die "$name" "could not create the venv at $env_dir"
    local py=$env_dir/bin/python
    _env_log "$name" "installing requirements (pip progress follows)"
    "$py" -m pip install --progress-bar off -r "$requirements" ||
        _env_die "$name" "pip install -r $requirements failed; see the pip output above"
    if [[ -n $post_hook ]]; then
        _env_log "$name" "running post-install step $post_hook"
        "$post_hook" "$py" || _env_die "$name" "post-install step $post_hook failed"
    fi
    echo "$want" >"$stamp"
    _env_log "$name" "done in $((SECONDS - started)) s, $(du -sh "$env_dir" | cut -f1): $env_dir"
    flock -u "$lock_fd"
}

# Prints the python of a built env, or fails with a message naming the build script.
env_python() {
    local name=$1
    local env_dir=${TRUNKLINE_ENVS:-$HOME/.cache/trunkline/envs}/$name
    [[ -f $env_dir/.trunkline-stamp && -x $env_dir/bin/python ]] ||
        _env_die "$name" "env not built; run: bash serving/envs/$name/build.sh"
    echo "$env_dir/bin/python"
}
