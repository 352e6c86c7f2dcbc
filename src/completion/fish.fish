
# Added by lockrun's generator (src/completion/): lock names for status and
# release come from the backend (`lockrun --complete-names [URL]`), and after
# `--` the command's own words are completed, as sudo's and timeout's
# completions do; lockrun's own options are not offered there.
function __lockrun_after_dashdash
    contains -- -- (commandline -opc)
end

function __lockrun_names
    set -l tokens (commandline -opc)
    set -l url
    for i in (seq (count $tokens))
        switch $tokens[$i]
            case -b --backend
                set -l next (math $i + 1)
                set -q tokens[$next]; and set url $tokens[$next]
            case '--backend=*'
                set url (string replace -- --backend= '' $tokens[$i])
        end
    end
    $tokens[1] --complete-names $url 2>/dev/null
end

function __lockrun_complete_command
    set -l tokens (commandline -opc)
    set -l at (contains -i -- -- $tokens)
    set -l line (string escape -- $tokens[(math $at + 1)..-1]) (commandline -ct)
    complete --do-complete=(string join ' ' -- $line)
end

complete -c lockrun -n "__lockrun_after_dashdash" -f -a "(__lockrun_complete_command)"
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand status release" -f -a "(__lockrun_names)" -d 'lock'
