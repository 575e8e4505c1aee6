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
