// lxrctl completion bash|zsh: a completion script made from the command
// table itself (so it never lists a command or flag that does not exist),
// completing workspace and host names by asking the controller.
import type { Command } from '../command.js';
import { GLOBAL_FLAGS } from '../args.js';
import { Exit, invalid } from '../failure.js';

/** Which names a command's first argument takes, for dynamic completion. */
const NAMES: Record<string, 'workspace' | 'host' | 'file'> = {
  inspect: 'workspace',
  exec: 'workspace',
  'exec ls': 'workspace',
  logs: 'workspace',
  start: 'workspace',
  stop: 'workspace',
  rm: 'workspace',
  'hosts inspect': 'host',
  'hosts cordon': 'host',
  'hosts uncordon': 'host',
  'hosts drain': 'host',
  'hosts rm': 'host',
  'images import': 'file',
};

const shellWords = (ws: Iterable<string>): string => [...ws].join(' ');

export function bashCompletion(commands: readonly Command[]): string {
  const paths = new Map<string, { subs: Set<string>; flags: Set<string> }>();
  const entry = (p: string): { subs: Set<string>; flags: Set<string> } => {
    let e = paths.get(p);
    if (!e) paths.set(p, (e = { subs: new Set(), flags: new Set() }));
    return e;
  };
  const valued = new Set<string>();
  for (const f of GLOBAL_FLAGS) if (f.kind !== 'bool') valued.add(`--${f.name}`);
  entry('');
  for (const c of commands) {
    for (let i = 0; i < c.path.length; i++) entry(c.path.slice(0, i).join(' ')).subs.add(c.path[i]!);
    const e = entry(c.path.join(' '));
    for (const f of [...c.args.flags, ...GLOBAL_FLAGS]) {
      e.flags.add(`--${f.name}`);
      if (f.short) e.flags.add(`-${f.short}`);
      if (f.kind !== 'bool') {
        valued.add(`--${f.name}`);
        if (f.short) valued.add(`-${f.short}`);
      }
    }
  }
  const cases = [...paths.entries()]
    .map(([p, e]) => {
      const kind = NAMES[p] ?? '';
      return `    "${p}") subs="${shellWords(e.subs)}"; flags="${shellWords(e.flags)}"; names="${kind}" ;;`;
    })
    .join('\n');
  return `# lxrctl completion for bash: source <(lxrctl completion bash)
_lxrctl() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" path="" i w skip=0 subs flags names
  local valued=" ${shellWords(valued)} "
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="\${COMP_WORDS[i]}"
    if ((skip)); then skip=0; continue; fi
    if [[ $w == -- ]]; then return 0; fi
    if [[ $w == -* ]]; then [[ $w != *=* && $valued == *" $w "* ]] && skip=1; continue; fi
    case "\${path:+$path }$w" in
${[...paths.keys()].filter((p) => p !== '').map((p) => `      "${p}") path="${p}"; continue ;;`).join('\n')}
    esac
    path="$path!"
    break
  done
  case "\${path%!}" in
${cases}
  esac
  # After the first argument only commands taking several names go on completing.
  [[ $path == *! && " ${shellWords(commands.filter((c) => c.args.variadic).map((c) => c.path.join(' ')))} " != *" \${path%!} "* ]] && names=""
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$flags" -- "$cur"))
    return 0
  fi
  local words=""
  [[ $path != *! ]] && words="$subs"
  case "$names" in
    workspace) words="$words $(lxrctl ps -a -q 2>/dev/null)" ;;
    host) words="$words $(lxrctl hosts ls 2>/dev/null | awk 'NR > 1 { print $1 }')" ;;
    file) COMPREPLY=($(compgen -f -- "$cur")); return 0 ;;
  esac
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
  return 0
}
complete -F _lxrctl lxrctl
`;
}

export function zshCompletion(commands: readonly Command[]): string {
  return `#compdef lxrctl
# lxrctl completion for zsh: source <(lxrctl completion zsh)
autoload -U +X bashcompinit && bashcompinit
${bashCompletion(commands)}`;
}

export function completionCommand(all: () => readonly Command[]): Command {
  return {
    path: ['completion'],
    usage: 'bash|zsh',
    summary: 'print a shell completion script (source <(lxrctl completion bash))',
    args: { flags: [], positionals: ['SHELL'], required: 1 },
    async run(inv) {
      const shell = inv.args.positionals[0];
      if (shell === 'bash') inv.out(bashCompletion(all()));
      else if (shell === 'zsh') inv.out(zshCompletion(all()));
      else throw invalid(`completion for ${JSON.stringify(shell)}: choose bash or zsh`);
      return Exit.OK;
    },
  };
}
