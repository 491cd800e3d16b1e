"""A small labelled set: store-support domain knowledge, and caller questions with the entry
that answers each (as a support lead would label them)."""

from __future__ import annotations

from agent.prompting.retrieval import KnowledgeEntry

ENTRIES = [
    KnowledgeEntry(
        1,
        "printers",
        "process",
        "If the receipt printer shows a red blinking light, open the cover, check the paper "
        "roll is seated with the shiny side down, and close the cover firmly.",
    ),
    KnowledgeEntry(
        2,
        "printers",
        "process",
        "A paper jam: switch the printer off, open the cover, pull the torn paper out gently "
        "and never use scissors or knives inside the printer.",
    ),
    KnowledgeEntry(
        3,
        "printers",
        "fact",
        "Receipt printers are Epson TM-T88 models connected to the till by USB; replacement "
        "thermal paper rolls are 80 mm wide.",
    ),
    KnowledgeEntry(
        4,
        "network",
        "process",
        "When the till shows offline, check the network cable at the back of the till and "
        "restart the store router by unplugging it for thirty seconds.",
    ),
    KnowledgeEntry(
        5,
        "payments",
        "process",
        "If the card terminal declines every card, restart the terminal and run a test "
        "transaction of one cent before serving customers again.",
    ),
    KnowledgeEntry(
        6,
        "policies",
        "policy",
        "Refunds above 200 euros need a store manager's approval code before the till "
        "accepts them.",
    ),
    KnowledgeEntry(
        7,
        "policies",
        "policy",
        "Never read out or ask for a customer's full card number over the phone.",
    ),
    KnowledgeEntry(
        8,
        "tickets",
        "fact",
        "Support tickets are answered within four hours on weekdays; urgent till outages "
        "are escalated to the on-call technician at once.",
    ),
    KnowledgeEntry(
        9,
        "scanner",
        "process",
        "If the barcode scanner beeps but nothing appears on the till, unplug the scanner "
        "and plug it back into a different USB port.",
    ),
    KnowledgeEntry(
        10,
        "printers",
        "process",
        "Faded or blank receipts mean the paper roll is inserted upside down or the thermal "
        "print head is dirty; clean the head with an alcohol swab.",
    ),
    KnowledgeEntry(
        11,
        "hours",
        "fact",
        "The support hotline is staffed from 7 in the morning to 10 at night, every day "
        "including public holidays.",
    ),
    KnowledgeEntry(
        12,
        "cash",
        "process",
        "If the cash drawer does not open after a sale, check the drawer cable to the "
        "receipt printer, then use the manual release key under the drawer.",
    ),
]

# (caller's words, the entry that answers them)
LABELLED_QUERIES = [
    ("The little light on my printer keeps flashing red", 1),
    ("paper got stuck inside and tore", 2),
    ("what size paper rolls do I need to order", 3),
    ("the till says it's offline", 4),
    ("every card gets declined on the terminal", 5),
    ("a customer wants a refund of 350 euros", 6),
    ("can I give you the customer's card number", 7),
    ("how long until someone answers my ticket", 8),
    ("the scanner beeps but the item doesn't show up", 9),
    ("the receipts come out blank", 10),
    ("are you open on public holidays", 11),
    ("the cash drawer won't open", 12),
]

# Harder: the same needs in other words, sharing few or no words with the entry.
PARAPHRASED_QUERIES = [
    ("there's a flashing warning lamp on the slip machine", 1),
    ("the roll is caught and ripped in there", 2),
    ("which model of receipt machine do we have", 3),
    ("we lost our internet connection at the checkout", 4),
    ("customers can't pay by card at all", 5),
    ("someone is asking for their money back, a big amount", 6),
    ("should I read you the long number on the customer's visa", 7),
    ("when will I hear back about my request", 8),
    ("the gun reads the code but the product doesn't come up", 9),
    ("the printouts are very faint", 10),
    ("can I call you late in the evening", 11),
    ("the money tray is stuck shut", 12),
]
