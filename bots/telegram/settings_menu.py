"""/settings: per-user option defaults chosen on an inline keyboard and kept in Redis.

Exports: SETTING_CHOICES, settings_command, settings_button, settings_keyboard.

Callback data is ``cfg:<owner user id>:<option>:<value>`` (or ``cfg:<owner>:reset``),
well under Telegram's 64-byte limit. Only the owner of a keyboard may press it, so
a settings message in a group cannot be used to change someone else's defaults.
"""

from __future__ import annotations

import asyncio

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest
from telegram.ext import ContextTypes

from stemscribe.bots.telegram.handlers import reply, services, user_scope

#: Options offered on the keyboard, each with its values; the first value is the default.
SETTING_CHOICES: dict[str, tuple[str, ...]] = {
    "mode": ("auto", "solo", "piano", "stems"),
    "stems": ("no", "yes"),
    "engine": ("auto", "basic-pitch", "transkun"),
    "level": ("full", "easy"),
}
_PREFIX = "cfg"


def _current(saved: dict, key: str) -> str:
    value = saved.get(key)
    if isinstance(value, bool):
        value = "yes" if value else "no"
    value = str(value).lower() if value not in (None, "") else SETTING_CHOICES[key][0]
    return value if value in SETTING_CHOICES[key] else SETTING_CHOICES[key][0]


def settings_text(saved: dict) -> str:
    shown = "  ".join(f"{key}:{_current(saved, key)}" for key in SETTING_CHOICES)
    return ("Your defaults, used whenever a caption does not say otherwise:\n" + shown + "\n\n"
            "Rows: " + ", ".join(SETTING_CHOICES) + ". Tap a value to change it.")


def settings_keyboard(owner_id: int, saved: dict) -> InlineKeyboardMarkup:
    """One row per option, the current value ticked, plus a reset button."""
    rows = []
    for key, values in SETTING_CHOICES.items():
        current = _current(saved, key)
        rows.append([InlineKeyboardButton(("✅ " if value == current else "") + value,
                                          callback_data=f"{_PREFIX}:{owner_id}:{key}:{value}") for value in values])
    rows.append([InlineKeyboardButton("Reset to defaults", callback_data=f"{_PREFIX}:{owner_id}:reset")])
    return InlineKeyboardMarkup(rows)


async def settings_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Show the user's defaults with buttons to change them."""
    message = update.effective_message
    user_id = message.from_user.id
    saved = await asyncio.to_thread(services(context).client.load_defaults, user_scope(user_id)) or {}
    await reply(message, settings_text(saved), reply_markup=settings_keyboard(user_id, saved))


async def settings_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Save the default the user tapped and redraw the keyboard."""
    query = update.callback_query
    parts = (query.data or "").split(":")
    if len(parts) not in (3, 4) or parts[0] != _PREFIX or not parts[1].isdigit():
        await query.answer("This button is out of date. Send /settings again.")
        return
    owner_id = int(parts[1])
    if query.from_user.id != owner_id:
        await query.answer("These are someone else's settings. Send /settings to change yours.", show_alert=True)
        return
    client = services(context).client
    scope = user_scope(owner_id)
    saved = dict(await asyncio.to_thread(client.load_defaults, scope) or {})
    if parts[2] == "reset" and len(parts) == 3:
        change: dict[str, str | None] = {key: None for key in SETTING_CHOICES}  # None removes a saved value
        note = "Back to the defaults."
    elif len(parts) == 4 and parts[2] in SETTING_CHOICES and parts[3] in SETTING_CHOICES[parts[2]]:
        change = {parts[2]: parts[3]}
        note = f"Saved: {parts[2]}:{parts[3]}"
    else:
        await query.answer("This button is out of date. Send /settings again.")
        return
    await asyncio.to_thread(client.save_defaults, scope, change)
    saved = {**saved, **change}
    await query.answer(note)
    try:
        await query.edit_message_text(settings_text(saved), reply_markup=settings_keyboard(owner_id, saved))
    except BadRequest as exc:
        if "not modified" not in exc.message.lower():
            raise
