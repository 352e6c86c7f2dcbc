
# Added by lockrun's generator (src/completion/): lock names for status and
# release come from the backend (`lockrun --complete-names [URL]`).
(( $+functions[_lockrun_names] )) ||
_lockrun_names() {
    local -a names url
    local i
    for (( i = 1; i < CURRENT; i++ )); do
        case $words[i] in
            -b|--backend) url=($words[i+1]) ;;
            --backend=*) url=(${words[i]#--backend=}) ;;
        esac
    done
    names=(${(f)"$(_call_program lock-names lockrun --complete-names $url 2>/dev/null)"})
    compadd -a names
}

# clap's script takes `status` in `lockrun status NAME` for the NAME of the
# default form, and completes nothing after `--`: route lock-name positions
# of status/release, and the command after `--`, here first.
(( $+functions[_lockrun_dynamic] )) ||
_lockrun_dynamic() {
    local i positional="" dashdash=""
    for (( i = 2; i < CURRENT; i++ )); do
        case $words[i] in
            --) dashdash=1; break ;;
            -b|--backend|-w|--wait|-E|--conflict-exit-code|--ttl|--slots|--kill-after|--max-time|-c|--command) (( i++ )) ;;
            -*) ;;
            *) [[ -z $positional ]] && positional=$words[i] ;;
        esac
    done
    if [[ -n $dashdash ]]; then
        # The command's own words, as for sudo or nice.
        words=("${(@)words[i+1,-1]}")
        (( CURRENT -= i ))
        _normal
    elif [[ ( $positional == status || $positional == release ) \
          && $words[CURRENT] != -* && $words[CURRENT-1] != (-b|--backend|--slots) ]]; then
        _lockrun_names
    else
        _lockrun "$@"
    fi
}

