# Shared by the load scripts in bench/ (sourced, not run).

b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }

# A development HS256 access token, valid for an hour, for a server
# started with the same secret (CUSTODIAN_AUTH__DEV_HS256_SECRET).
hs256_token() { # secret sub role
    local now header claims sig
    now=$(date +%s)
    header=$(printf '{"alg":"HS256","typ":"at+jwt"}' | b64url)
    claims=$(printf '{"sub":"%s","roles":["%s"],"iss":"custodian","aud":"custodian-api","iat":%d,"exp":%d}' \
        "$2" "$3" "$now" "$((now + 3600))" | b64url)
    sig=$(printf '%s.%s' "$header" "$claims" | openssl dgst -sha256 -hmac "$1" -binary | b64url)
    printf '%s.%s.%s' "$header" "$claims" "$sig"
}

# Runs `run_backend PostgreSQL <url>` in DATABASE_URL (an empty, disposable
# database) or in a scratch database created under PG_ADMIN_URL (named
# <prefix>_<pid>; the caller's cleanup drops $PG_SCRATCH), else says why not.
run_postgres() { # scratch-name-prefix
    local url="${DATABASE_URL:-}"
    if [[ -z "$url" && -n "${PG_ADMIN_URL:-}" ]]; then
        PG_SCRATCH="$1_$$"
        psql -q "$PG_ADMIN_URL" -c "CREATE DATABASE $PG_SCRATCH" >/dev/null
        url="${PG_ADMIN_URL%/*}/$PG_SCRATCH"
    fi
    if [[ -n "$url" ]]; then
        run_backend PostgreSQL "$url"
    else
        echo "(PostgreSQL skipped: set PG_ADMIN_URL or DATABASE_URL)"
    fi
}
