"""Letters' one-click actions in campaign's work queue."""

from __future__ import annotations

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from campaign import services as campaign_services
from campaign import workqueue
from campaign.models import Attention, Case
from campaign.selectors import AnyUser
from letters import services
from letters.models import Letter, LetterKind


@workqueue.register("retry_letter", gettext_lazy("Retry the letter"), {Attention.LETTER_FAILED})
def retry_letter(case: Case, user: AnyUser) -> str:
    letter = Letter.objects.filter(case=case, status=Letter.Status.FAILED).order_by("-id").first()
    retried = letter is not None and services.letter_retry(
        letter=letter,
        actor=user,
    )
    if letter is None or not retried:
        raise services.LetterNotQueued(_("no failed letter to retry (a later one went out)"))
    campaign_services.case_attention_clear(
        case=case, actor=user, note=f"Retried the letter to {letter.recipient_email}."
    )
    return _("letter queued again")


@workqueue.register(
    "write_given_contact",
    gettext_lazy("Write to the address they gave"),
    {Attention.OTHER_CONTACT},
)
def write_given_contact(case: Case, user: AnyUser) -> str:
    contact = workqueue.case_use_given_contact(case=case, actor=user)
    services.letter_queue(
        case=case,
        kind=LetterKind.INITIAL,
        actor=user,
        fresh=True,
    )
    return _("letter queued to %(email)s") % {"email": contact.email}
