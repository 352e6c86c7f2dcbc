
# Added by lockrun's generator (src/completion/): lock names for status and
# release come from the backend (`lockrun --complete-names [URL]`), and after
# `--` the command's own words are completed, as sudo's and timeout's
# completions do, not lockrun's options.
_lockrun_dynamic() {
    local i cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    local sub="" url="" positional=""
    for (( i = 1; i < COMP_CWORD; i++ )); do
        case ${COMP_WORDS[i]} in
            --)
                if declare -F _command_offset >/dev/null; then
                    _command_offset $(( i + 1 ))
                elif (( COMP_CWORD == i + 1 )); then
                    COMPREPLY=( $(compgen -c -- "$cur") )
                else
                    COMPREPLY=( $(compgen -f -- "$cur") )
                fi
                return 0 ;;
            -b|--backend) url=${COMP_WORDS[i+1]}; (( i++ )) ;;
            --backend=*) url=${COMP_WORDS[i]#--backend=} ;;
            -w|--wait|-E|--conflict-exit-code|--ttl|--slots|--kill-after|--max-time|-c|--command) (( i++ )) ;;
            -*) ;;
            *)
                if [[ -z $positional ]]; then
                    positional=${COMP_WORDS[i]}
                    case $positional in status|release) sub=$positional ;; esac
                fi ;;
        esac
    done
    if [[ -n $sub && $cur != -* && $prev != -b && $prev != --backend && $prev != --slots ]]; then
        local names
        names=$("${COMP_WORDS[0]}" --complete-names ${url:+"$url"} 2>/dev/null)
        COMPREPLY=( $(compgen -W "$names" -- "$cur") )
        return 0
    fi
    _lockrun "$@"
}

if [[ "${BASH_VERSINFO[0]}" -eq 4 && "${BASH_VERSINFO[1]}" -ge 4 || "${BASH_VERSINFO[0]}" -gt 4 ]]; then
    complete -F _lockrun_dynamic -o nosort -o bashdefault -o default lockrun
else
    complete -F _lockrun_dynamic -o bashdefault -o default lockrun
fi
