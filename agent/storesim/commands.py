"""The store PC's command interpreter: exactly `cd /catalina && CMD [LANE]`, nothing else.

There is no shell behind it. Anything that is not one of the allow-listed forms is
refused and changes nothing; every attempt lands in the simulator's command log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agent.storesim.state import SimState, Store

PREFIX = "cd /catalina && "
LANE_COMMANDS = ("printer_status", "coup", "ink_clean", "printer_reset")
_LANE_FORM = re.compile(r"(" + "|".join(LANE_COMMANDS) + r") ([0-9]{1,3})")
# Characters a shell would give meaning to; their presence alone is refused.
# A long-running sim keeps only the most recent commands.
_LOG_LIMIT = 10_000
_METACHARACTERS = set(";|&`$<>(){}[]*?!~#\\'\"\n\r\t")


@dataclass(frozen=True)
class CommandResult:
    output: str
    exit_status: int
    # False when the command was refused (not allow-listed); True when it ran, even if
    # the printer answered with an error.
    allowed: bool = True


def run_command(state: SimState, store: Store, command_line: str) -> CommandResult:
    result = _interpret(state, store, command_line)
    state.command_log.append(
        {
            "chain": store.chain,
            "store": store.store,
            "command": command_line,
            "allowed": result.allowed,
            "exit_status": result.exit_status,
            "output": result.output,
        }
    )
    del state.command_log[:-_LOG_LIMIT]
    return result


def _interpret(state: SimState, store: Store, command_line: str) -> CommandResult:
    if not command_line.startswith(PREFIX):
        return CommandResult("ERROR commands must start with 'cd /catalina && '", 2, allowed=False)
    rest = command_line[len(PREFIX) :]
    if any(char in _METACHARACTERS for char in rest):
        return CommandResult("ERROR shell metacharacters are not allowed", 2, allowed=False)
    if rest == "lanes":
        now = state.clock()
        lines = [f"{lane} {store.printers[lane].status(now)}" for lane in sorted(store.printers)]
        return CommandResult("\n".join(lines), 0)
    match = _LANE_FORM.fullmatch(rest)
    if match is None:
        return CommandResult(
            f"ERROR unknown command: {rest.split(' ')[0] or '(empty)'}", 127, allowed=False
        )
    name, lane = match.group(1), int(match.group(2))
    if not 1 <= lane <= 99 or match.group(2).startswith("0"):
        return CommandResult(f"ERROR bad lane {match.group(2)}: lanes are 1-99", 2, allowed=False)
    printer = store.printers.get(lane)
    if printer is None:
        return CommandResult(f"ERROR no printer on lane {lane}", 2, allowed=False)
    now = state.clock()
    if name == "printer_status":
        return CommandResult(printer.status_line(now), 0)
    if name == "coup":
        output = printer.test_print(now)
    elif name == "ink_clean":
        output = printer.ink_clean(now, state.timing)
    else:
        output = printer.reset(now, state.timing)
    return CommandResult(output, 1 if output.startswith("ERROR") else 0)
