"""The tone check: advisory letters must never accuse the recipient or threaten legal action.

Pure Python on purpose (no Django at import): the `check_tone` command, the approval workflow
and the test suite all call it, and it must run on a template file before any database exists.

How it works: the source (HTML or plain text, both possibly with Django template syntax) is
reduced to the prose a recipient reads, with a map from every prose character back to its
source offset, so a hit points at the source file's own line and column. Each language has
rules (regular expressions, grouped by the concept they express) and an allow-list of benign
phrases; a hit wholly inside an allow-list match is dropped. Space-separated languages match on
word boundaries, with stems and suffix alternations for their inflections; Japanese, Korean and
Chinese match substrings, so their allow-lists hold the benign compounds that contain a term.
"""

from __future__ import annotations

import bisect
import html
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

LANGUAGES: tuple[str, ...] = (
    "en", "ja", "ko", "zh-hant", "pt-br", "es", "de", "nl", "fr", "it",
    "da", "nb", "pl", "lt", "ms", "bg", "el",
)  # fmt: skip
CJK_LANGUAGES = frozenset({"ja", "ko", "zh-hant"})

LEGAL = "legal threat"
ACCUSATION = "accusation"
SPAMMING = "you are spamming"
CATEGORY: dict[str, str] = {SPAMMING: ACCUSATION}  # every other concept is a legal threat


class UnknownLanguage(ValueError):
    pass


class LanguageNotFound(ValueError):
    pass


@dataclass(frozen=True)
class ToneIssue:
    line: int  # 1-based, in the source text
    column: int  # 1-based
    phrase: str  # as found in the text, whitespace collapsed
    reason: str  # e.g. "legal threat: 'violation'"
    field: str = ""  # which part of a stored template (subject, body_html, body_text)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# Rules: language -> concept -> patterns. A space in a pattern matches any run of whitespace
# (HTML wraps lines anywhere). Patterns are matched on lower-cased text; Greek also has its
# accents stripped and final sigma folded, so Greek patterns are written without accents.
# ---------------------------------------------------------------------------------------------

W = r"[^\W\d_]"  # a letter; used where \w would also swallow digits

RULES: dict[str, dict[str, list[str]]] = {
    "en": {
        "violation": [
            r"violat(?:e|es|ed|ing|ion|ions|or|ors)",
            r"contraven(?:e|es|ed|ing|tion|tions)",
            r"infring(?:e|es|ed|ing|ement|ements)",
        ],
        "breach of law": [
            r"(?:in )?breach(?:es|ed|ing)? (?:of )?(?:the |any |applicable |our |your |local )?"
            r"(?:law|laws|regulations?|rules|statutes?|terms|contract|policy|duty)",
            r"(?:break|breaks|broke|broken|breaking) (?:a|any|the|our|local|national)"
            r" (?:\w+ )?laws?",
            r"against the law",
        ],
        "illegal": [r"illegal(?:ly|ity)?", r"illicit(?:ly)?"],
        "unlawful": [r"unlawful(?:ly|ness)?", r"wrongful(?:ly)?"],
        "penalty": [r"penalt(?:y|ies)", r"penali[sz](?:e|es|ed|ing|ation)"],
        "fine": [r"fin(?:e|es|ed|ing)"],  # the benign senses are on the allow-list
        "punishment": [r"punish(?:ed|es|ing|ment|ments|able)?", r"punitive"],
        "prosecution": [
            r"prosecut(?:e|es|ed|ing|ion|ions|or|ors)",
            r"indict(?:ed|ment|ments)?",
            r"(?:criminal|legal|court) proceedings",
            r"(?:be|been|being) charged with",
        ],
        "sanction": [r"sanction(?:s|ed|ing)?"],
        "offence": [r"offen[cs]es?"],
        "liability": [
            r"liabilit(?:y|ies)",
            r"liable",
            r"(?:held|hold|holding|holds) (?:you |your \w+ )?(?:legally )?"
            r"(?:responsible|accountable)",
            r"legally responsible",
        ],
        "criminal": [
            r"criminal(?:s|ly|ity)?",
            r"(?:cyber[- ]?)?crimes?",
            r"felon(?:y|ies|s)?",
            r"misdemeanou?rs?",
        ],
        "lawsuit": [
            r"law ?suits?",
            r"litigat(?:e|ed|ing|ion)",
            r"su(?:e|ed|ing) you",
            r"(?:we|they|will|may|could|might) sue",
            r"(?:take|taking|took) you to court",
            r"court (?:action|order|orders|case)",
        ],
        "legal action": [
            r"legal (?:action|actions|proceedings|steps|consequences|measures)",
            r"we (?:will|shall|may|might|could|must|are going to|intend to|reserve the right to)"
            r"(?: \w+)? take (?!no )(?:\w+ )?(?:action|measures)",  # "will take no action" is fine
            r"enforcement (?:action|actions|measures)",
            r"(?:punitive|disciplinary) (?:action|measures)",
        ],
        SPAMMING: [
            r"you(?:'re|’re| are| have been| were| keep| continue to)(?: \w+)? "
            r"(?:spamming|sending spam|sending unsolicited \w+|distributing spam|spreading spam"
            r"|relaying spam)",
            r"you(?:'ve|’ve| have)?(?: \w+)? (?:sent|send|spread|distributed|relayed)"
            r" (?:\w+ )?spam",
            r"you (?:are|were) (?:a |the )?spammers?",
            r"you spammed",
            r"your (?:spamming|spam (?:campaigns?|operation|operations|activities|activity))",
        ],
    },
    "de": {
        "violation": [
            r"\w*verst(?:o|ö)(?:ß|ss)\w*",  # Verstoß, Rechtsverstoß, verstoßen; Swiss "ss"
            r"\w*verletzung (?:de[rs] |von )?(?:\w+ )?"
            r"(?:gesetz\w*|recht\w*|vorschrift\w*|pflicht\w*)",
            r"(?:gesetz|recht|vorschrift)\w* (?:verletzt|verletzen|gebrochen|brechen)",
            r"zuwiderhandl\w*",
        ],
        "illegal": [r"illegal\w*", r"\w*rechtswidrig\w*", r"\w*gesetzwidrig\w*", r"strafbar\w*"],
        "unlawful": [r"unrechtm(?:ä|ae|a)(?:ß|ss)ig\w*"],
        # "straff" (taut, to tighten) is not "Strafe"; Strafraum is football.
        "penalty": [r"\w*straf(?!f|raum)\w*", r"vertragsstraf\w*"],
        "fine": [r"\w*bu(?:ß|ss)geld\w*", r"\w*geldbu(?:ß|ss)e\w*", r"bu(?:ß|ss)en?", r"\w*bußen?"],
        "prosecution": [
            r"verklag\w*",
            r"\w*anklag\w*",
            r"angeklagt\w*",
            r"anzeige (?:erstatten|gegen)",
            r"\w*anzeige erstattet",
            r"staatsanwalt\w*",
        ],
        "sanction": [r"\w*sanktion\w*"],
        "offence": [
            r"ordnungswidrig\w*",
            r"vergehens",
            r"(?:ein|das|dieses|ihr|einem|dem|einen) vergehen",
        ],
        "liability": [r"\w*haftung\w*", r"\w*haftbar\w*", r"zur verantwortung (?:ge)?zogen"],
        "criminal": [r"\w*kriminell\w*", r"\w*kriminalität\w*", r"\w*verbrech\w*"],
        "lawsuit": [r"klage", r"\w+klage(?:n)?", r"gerichtlich\w*", r"rechtsstreit\w*"],
        "legal action": [
            r"(?:rechtliche|juristische|gerichtliche) (?:schritte|konsequenzen|maßnahmen|folgen)",
            r"wir werden (?:\w+ ){0,3}(?:schritte|maßnahmen) (?:ergreifen|einleiten)",
        ],
        SPAMMING: [
            r"sie (?:versenden|verschicken|verbreiten|senden|schicken) (?:\w+ ){0,2}spam\w*",
            r"sie haben (?:\w+ ){0,3}spam\w* (?:versendet|versandt|verschickt|verbreitet"
            r"|gesendet|geschickt)",
            r"sie spammen",
            r"sie sind (?:ein |eine )?spammer\w*",
        ],
    },
    "nl": {
        "violation": [
            r"\w*overtreding(?:en)?",
            r"overtre(?:den|edt|ed)",
            r"overtra(?:d|den)",
            r"inbreuk(?:en)?",
            r"schending(?:en)?",
            r"(?:ge)?schonden",
        ],
        "illegal": [
            r"illegal\w*",
            r"illegaa?l(?:e|iteit)?",
            r"onwettig\w*",
            r"strafba\w*",
            r"wederrechtelijk\w*",
        ],
        "unlawful": [r"onrechtmatig\w*"],
        # Flemish "straffe" (strong, great) is an adjective, not a punishment.
        "penalty": [r"\w*straf(?!fe\b)\w*", r"dwangsom(?:men)?"],
        "fine": [r"\w*boete(?:s|n)?"],
        "prosecution": [
            r"vervolging(?:en)?",
            r"vervolgd",  # not "vervolgens" (then), "in het vervolg"
            r"aangifte (?:doen|tegen|bij de politie)",
            r"dagvaard\w*",
            r"openbaar ministerie",
        ],
        "sanction": [r"\w*sancti\w*"],
        "offence": [r"misdrij(?:f|ven)", r"misda(?:ad|den)", r"delict(?:en)?"],
        "liability": [r"aansprakelijk\w*"],
        "criminal": [r"crimine(?:el|le)", r"criminaliteit"],
        "lawsuit": [r"rechtszaak", r"rechtszaken", r"(?:juridische|gerechtelijke) stappen"],
        "legal action": [
            r"(?:wij|we) (?:zullen|gaan) (?:\w+ ){0,2}(?:maatregelen|stappen) (?:nemen|ondernemen)",
            r"juridische (?:maatregelen|gevolgen|consequenties)",
        ],
        SPAMMING: [
            r"(?:u|jij|je|jullie) (?:verstuurt|verzendt|verspreidt|stuurt|verstuurde|verzond"
            r"|verspreidde|versturen|verzenden|sturen) (?:\w+ ){0,2}spam\w*",
            r"(?:u|jij|je|jullie) (?:heeft|hebt|heb|hebben) (?:\w+ ){0,3}spam\w* (?:verstuurd"
            r"|verzonden|verspreid|gestuurd)",
            r"(?:u|jij|je) spamt",
            r"(?:u bent|jij bent|je bent|jullie zijn) (?:een )?spammers?",
        ],
    },
    "da": {
        "violation": [
            r"\w*overtrædelse\w*",
            r"overtræde[rt]?",
            r"krænkelse\w*",
            r"brud på (?:\w+ )?(?:loven|lovgivningen|reglerne|\w*lov\w*)",
        ],
        "illegal": [r"ulovlig\w*", r"illegal\w*", r"retsstridig\w*", r"strafbar\w*"],
        "unlawful": [r"lovstridig\w*", r"uretmæssig\w*"],
        "penalty": [r"\w*straf\w*", r"sanktion\w*"],
        "fine": [r"\w*bøde(?:n|r|rne|ns|s)?", r"bødelagt\w*", r"pålægge\w* (?:\w+ )?bøde\w*"],
        "prosecution": [
            r"retsforfølg\w*",
            r"tiltal(?!ende)\w*",  # "tiltalende" is appealing
            r"anklage\w*",
            r"politianmeld\w*",
            r"anmelde\w* (?:\w+ )?til politiet",
        ],
        "offence": [r"forbrydelse\w*", r"lovbrud\w*"],
        "criminal": [r"kriminel\w*", r"kriminalitet\w*"],
        "liability": [
            r"erstatningsansvar\w*",
            r"juridisk ansvar\w*",
            r"(?:holde|holdes|holdt) (?:jer|dig|dem|de) (?:\w+ )?ansvarlig\w*",
        ],
        "lawsuit": [r"retssag\w*", r"sagsanlæg\w*", r"sagsøg\w*"],
        "legal action": [
            r"(?:retslige|juridiske) (?:skridt|konsekvenser|foranstaltninger)",
            r"vi (?:vil|kommer til at) (?:\w+ ){0,2}(?:skride til|tage)"
            r" (?:\w+ )?(?:skridt|handling)",
            r"skride ind",
        ],
        SPAMMING: [
            r"(?:i|du|de) (?:sender|udsender|spreder|sendte|udsendte|har sendt|har udsendt"
            r"|har spredt) (?:\w+ ){0,2}spam\w*",
            r"(?:i|du|de) spammer",
            r"(?:i|du|de) er (?:en )?spammere?",
        ],
    },
    "nb": {
        "violation": [
            r"\w*lovbrudd\w*",
            r"brudd på (?:\w+ )?(?:loven|lovverket|regelverket|reglene|\w*lov\w*)",
            r"\w*overtredelse\w*",
            r"overtr(?:er|ådt|å)",
            r"krenkelse\w*",
        ],
        "illegal": [r"ulovlig\w*", r"illegal\w*", r"rettsstridig\w*"],
        "unlawful": [r"lovstridig\w*", r"urettmessig\w*"],
        # Football's straffespark is no threat.
        "penalty": [r"\w*straff(?!espark)\w*"],
        "fine": [
            r"bøter",
            r"bøtene",
            r"bøtelegg\w*",
            r"bøtelagt\w*",
            # "bot" is also a (ro)bot, so only in a sanction's company:
            r"(?:ilegge|ilegges|ilagt|idømt|idømme|få|gi|betale|risikere|risikerer) "
            r"(?:dere |deg |dem |en |ei )*(?:\w+ )?bot(?:en)?",
            r"forelegg\w*",
        ],
        "prosecution": [
            r"rettsforfølg\w*",
            r"tiltal(?:e|en|t|es|er)",
            r"politianmeld\w*",
            r"anmelde\w* (?:\w+ )?til politiet",
        ],
        "sanction": [r"sanksjon\w*"],
        "offence": [r"forbrytelse\w*"],
        "criminal": [r"kriminell\w*", r"kriminalitet\w*"],
        "liability": [
            r"erstatningsansvar\w*",
            r"juridisk ansvar\w*",
            r"(?:holde|holdes|holdt) (?:dere|deg|dem|de) (?:\w+ )?ansvarlig\w*",
        ],
        "lawsuit": [r"søksmål\w*", r"saksøk\w*", r"rettssak\w*"],
        "legal action": [
            r"(?:rettslige|juridiske) (?:skritt|konsekvenser|tiltak)",
            r"vi (?:vil|kommer til å) (?:\w+ ){0,2}(?:iverksette|sette i verk|ta) (?:\w+ )?"
            r"(?:skritt|tiltak|grep)",
        ],
        SPAMMING: [
            r"(?:dere|du|de) (?:sender|sendte|sprer|spredte|har sendt|har spredt) "
            r"(?:\w+ ){0,2}spam\w*",
            r"(?:dere|du|de) spammer",
            r"(?:dere|du|de) er (?:en )?spammere?",
        ],
    },
    "pl": {
        "violation": [
            r"narusz\w*",
            r"(?:z)?łamani\w* (?:\w+ )?(?:prawa|przepisów|ustawy|regulaminu)",
            r"(?:z)?łam(?:ie|ią|iesz|iecie|ał|ała|ali|ały) (?:\w+ )?(?:prawo|przepisy|ustawę)",
        ],
        "illegal": [r"nielegaln\w*", r"bezprawn\w*"],
        "unlawful": [r"(?:nie|sprzeczn)\w* z prawem"],
        "penalty": [
            r"kar(?:a|y|ze|ę|ą|om|ami|ach)?",
            r"karn(?:y|a|e|ego|ej|emu|ym|ych|ymi|ie|ą)",
            r"(?:u)?kar(?:ać|any|ana|ani|ane|zemy)\w*",
        ],
        "fine": [r"grzywn\w*", r"mandat\w* karn\w*"],
        "prosecution": [
            r"ścig(?:ać|any|ana|ani|ane|anie|ania|aniu|amy)\b",
            r"oskarż\w*",
            r"prokurat\w*",
            r"poz(?:ew|wu|wem|wy|wów|wać|wiemy|wie|wany|wana|wani)",  # not "pozwala" (allows)
        ],
        "sanction": [r"sankcj\w*"],
        "offence": [r"przestęp\w*", r"wykrocz\w*"],
        "criminal": [r"kryminal\w*"],
        "liability": [
            r"odpowiedzialnoś\w* (?:karn|prawn|cywiln|odszkodowawcz|administracyjn)\w*",
            r"pociągnię\w* do odpowiedzialności",
            r"pociągn\w* (?:\w+ )?do odpowiedzialności",
        ],
        "lawsuit": [r"(?:sądow|prawn)\w* (?:kroki|działania|postępowani\w*)", r"do sądu"],
        "legal action": [
            r"podejmiemy (?:\w+ ){0,2}(?:kroki|działania|środki)",
            r"(?:kroki|działania|środki) (?:prawne|sądowe)",
        ],
        SPAMMING: [
            r"(?:pan|pani|państwo) (?:wysyła|wysyłają|rozsyła|rozsyłają|wysyłał\w*|rozsyłał\w*"
            r"|rozesłał\w*|wysłał\w*) (?:\w+ )?spam\w*",
            r"(?:wysyłacie|rozsyłacie|wysyłasz|rozsyłasz) (?:\w+ )?spam\w*",
            r"(?:pan|pani|państwo) spamuj\w*",
            r"spamujecie|spamujesz",
            r"(?:jest pan|jest pani|są państwo|jesteście|jesteś) (?:\w+ )?spamer\w*",
        ],
    },
    "lt": {
        "violation": [
            r"pažeidim\w*",
            r"pažeid(?:ė|ėte|ėme|ėjo|ę|usi|usios|usių|žia|žiate|žiame|žiant)",
            r"(?:įstatym|teis)\w* pažeid\w*",
        ],
        "illegal": [r"neteisėt\w*", r"nelegal\w*", r"prieštarauj\w* (?:\w+ )?įstatym\w*"],
        "penalty": [r"nuobaud\w*", r"baudžiam\w*", r"nubaus\w*", r"bausm\w*"],
        "fine": [r"baud(?:a|os|ą|oje|ų|oms|omis|as|ai|ų)", r"(?:nu)?baus(?:ti|ite|ime)"],
        "prosecution": [
            r"persekio\w*",
            r"kaltin\w*",
            r"ieškin\w*",
            r"prokuror\w*",
            r"kreip\w* į (?:teismą|policiją|prokuratūrą)",
        ],
        "sanction": [r"sankcij\w*"],
        "offence": [r"nusikalt\w*", r"nusiženg\w*"],
        "criminal": [r"kriminal\w*", r"nusikalst\w*"],
        "liability": [
            r"(?:teisin|baudžiam|administracin|civilin)\w* atsakomyb\w*",
            r"trauk\w* (?:\w+ )?atsakomybėn",
            r"atsakomybėn",
        ],
        "legal action": [
            r"imsimės (?:\w+ ){0,2}(?:priemonių|veiksmų)",
            r"teisin\w* (?:priemon|veiksm|žingsn)\w*",
        ],
        SPAMMING: [
            r"(?:jūs|tu) (?:siunčiate|siuntėte|platinate|platinote|siunti|siuntei|esate siuntę)"
            r" (?:\w+ ){0,2}(?:šlamšt|brukal|spam|nepageidaujam)\w*",
            r"(?:jūs esate|tu esi) (?:\w+ )?(?:šlamšto|brukalų|spamo) (?:siuntėj|platintoj)\w*",
        ],
    },
    "pt-br": {
        "violation": [
            r"violaç(?:ão|ões)",
            r"violacao|violacoes",
            r"viol(?:ou|aram|ando|ar|ado|ada|ados|adas|am)",
            r"infraç(?:ão|ões)",
            r"infrator(?:a|es|as)?",
            r"infring\w+",
        ],
        "illegal": [r"ilega(?:l|is|lmente|lidade)", r"ilícit(?:o|a|os|as|amente)"],
        "unlawful": [r"contra a lei", r"fora da lei", r"contrári[oa]s? à lei"],
        "penalty": [
            r"penalidade(?:s)?",
            r"penas?",
            r"penaliz\w+",
            r"puni(?:ção|ções|do|da|dos|das|r|rá)",
        ],
        "fine": [r"multa(?:s|do|da|dos|das|r|rá|rão|ria|riam)?"],
        "prosecution": [
            r"processo(?:s)? (?:judicia(?:l|is)|crimina(?:l|is)|pena(?:l|is))",
            r"process(?:á|a)-l[oa]s?",
            r"acusaç(?:ão|ões)",
            r"acusad[oa]s?",
            r"denúncia (?:criminal|ao ministério público|à polícia)",
            r"ministério público",
        ],
        "sanction": [r"sanç(?:ão|ões)", r"sancionad[oa]s?"],
        "offence": [r"delitos?", r"contravenç(?:ão|ões)"],
        "criminal": [r"crimes?", r"crimin(?:al|ais|almente|os[oa]s?)", r"pena(?:l|is)"],
        "liability": [
            r"responsabilidade (?:legal|civil|penal|criminal|jurídica)",
            r"responsabiliz\w+",
        ],
        "lawsuit": [r"aç(?:ão|ões) (?:judicia(?:l|is)|lega(?:l|is)|pena(?:l|is))"],
        "legal action": [
            r"(?:tomaremos|adotaremos|iremos tomar|vamos tomar|tomarão) (?:as )?(?:devidas )?"
            r"(?:medidas|providências)",
            r"(?:medidas|providências) (?:legais|cabíveis|judiciais)",
        ],
        SPAMMING: [
            r"(?:você|vocês|o senhor|a senhora|sua empresa) (?:está|estão|esteve|tem|vem|têm)"
            r" (?:\w+ ){0,2}(?:enviando|mandando|disparando|distribuindo|espalhando) spam",
            r"(?:você|vocês|o senhor|a senhora|sua empresa) (?:enviou|mandou|disparou|enviaram)"
            r" (?:\w+ )?spam",
            r"(?:você|vocês|sua empresa) (?:é|são) (?:um |uma )?spammers?",
        ],
    },
    "es": {
        "violation": [
            r"violaci(?:ón|on|ones)",
            r"viol(?:ó|an|aron|ar|ando|ado|ada|ados|adas)",
            r"vulneraci(?:ón|on|ones)",
            r"vulner(?:ó|a|an|aron|ar|ando|ado|ada|ados|adas)",  # not "vulnerable"
            r"infracci(?:ón|on|ones)",
            r"infractor\w*",
            r"infring\w+",
            r"incumplimiento de la ley",
        ],
        "illegal": [r"ilegal(?:es|mente|idad)?", r"ilícit(?:o|a|os|as|amente)", r"ilicitud"],
        "unlawful": [r"contra la ley", r"fuera de la ley", r"antijurídic\w+"],
        "penalty": [r"penalizaci(?:ón|ones)", r"penaliz\w+", r"penas?", r"castig\w+"],
        "fine": [r"multa(?:s|do|da|dos|das|r|rá|rán|ría)?"],
        "prosecution": [
            r"enjuici\w+",
            r"proceso (?:judicial|penal)",
            r"procesad[oa]s? (?:judicial|penal)mente",
            r"denuncia (?:penal|ante (?:la policía|la fiscalía|las autoridades))",
            r"fiscalía",
            r"querellas?",
        ],
        "sanction": [r"sanci(?:ón|on|ones)", r"sancion(?:ar|ado|ada|ados|adas|aremos|ará)"],
        "offence": [r"delitos?", r"contravenci(?:ón|ones)"],
        "criminal": [
            r"crimen(?:es)?",
            r"criminal(?:es|mente)?",
            r"delictiv\w+",
            r"penal(?:es|mente)?",
        ],
        "liability": [
            r"responsabilidad(?:es)? (?:legal|legales|civil|civiles|penal|penales|jurídica)",
            r"responsabiliz\w+",
        ],
        "lawsuit": [
            r"demandar(?:le|la|lo|les)?",
            r"demandaremos",
            r"(?:interponer|presentar|presentaremos|interpondremos) (?:una )?demanda",
            r"demanda (?:judicial|civil|penal)",
            r"acci(?:ón|ones) (?:judicial|judiciales|legal|legales|penal|penales)",
        ],
        "legal action": [
            r"(?:tomaremos|adoptaremos|emprenderemos) (?:las |los )?(?:\w+ )?(?:medidas|acciones)",
            r"medidas (?:legales|judiciales|oportunas contra)",
        ],
        SPAMMING: [
            r"(?:usted|ustedes|tú|su empresa) (?:está|están|estás|ha estado|han estado|has estado"
            r"|sigue|siguen) (?:\w+ ){0,2}(?:enviando|mandando|distribuyendo|difundiendo) spam",
            r"(?:usted|ustedes|tú|su empresa) (?:envió|ha enviado|mandó|enviaron|han enviado"
            r"|enviaste|has enviado) (?:\w+ )?spam",
            r"(?:usted es|ustedes son|su empresa es|eres) (?:un |una )?spammers?",
            r"(?:estás|estáis|has estado|habéis estado) (?:\w+ )?(?:enviando|mandando) spam",
            r"(?:has|habéis) (?:\w+ )?(?:enviado|mandado) spam",
            r"(?:enviáis|envías|enviaste|enviasteis) spam",
        ],
    },
    "fr": {
        "violation": [
            r"violations?",
            r"viol(?:er|é|ée|és|ées|ez|ons|ait|aient|erait)",  # not "violent", "violet"
            r"infractions?",
            r"enfrei\w+",
            r"contreven\w+",
            r"contraventions?",
        ],
        "illegal": [r"ill(?:é|e)gal\w*", r"illicite\w*"],
        "unlawful": [
            r"contraire(?:s)? à la loi",
            r"hors[- ]la[- ]loi",
            r"irréguli(?:er|ère)s? au regard",
        ],
        "penalty": [
            r"pénalit(?:é|és)",
            r"pénalis\w+",
            r"peines?",
            r"punitions?",
            r"puni(?:r|e|s|es|rons)",
        ],
        "fine": [r"amendes?"],
        "prosecution": [
            r"poursuites(?: judiciaires| pénales)?",  # a singular "poursuite" is a continuation
            r"poursuite (?:judiciaire|pénale)",
            r"poursuivi(?:e|s|es)? (?:en justice|pénalement)",
            r"(?:vous )?poursuivre en justice",
            r"en justice",
            r"procès",
            r"procédures? (?:judiciaires?|pénales?)",
            r"(?:porter|déposer|déposerons|porterons) (?:une )?plainte",
            r"plaintes? pénales?",
            r"parquet",
        ],
        "sanction": [r"sanction(?:s|ner|né|née|nés|nées|nerons|nera)?"],
        "offence": [r"délits?", r"délictu\w+"],
        "criminal": [
            r"criminel(?:le|s|les)?",
            r"crimes?",
            r"criminalité",
            r"pén(?:al|ale|ales|aux)",
        ],
        "liability": [
            r"responsabilité (?:pénale|civile|juridique|légale)",
            r"responsables? (?:pénalement|civilement|juridiquement|légalement)",
            r"tenu(?:e|s|es)? (?:pour )?responsables?",
        ],
        "legal action": [
            r"nous (?:prendrons|allons prendre|engagerons|pourrions prendre|pourrons prendre)"
            r" (?:des |les |toutes )?(?:\w+ )?(?:mesures|dispositions|sanctions)",
            r"mesures (?:légales|judiciaires|coercitives)",
        ],
        SPAMMING: [
            r"vous (?:envoyez|expédiez|diffusez|distribuez|relayez|propagez) (?:du |des |de )?"
            r"(?:\w+ )?(?:spams?|pourriels?|courriels? indésirables?)",
            r"vous avez (?:\w+ ){0,2}(?:envoyé|expédié|diffusé|relayé|propagé) (?:du |des |de )?"
            r"(?:spams?|pourriels?|courriels? indésirables?)",
            r"vous êtes (?:un |une |des )?(?:spammeur|spammeuse|polluposteur)\w*",
            r"vous spammez",
        ],
    },
    "it": {
        "violation": [
            r"violazion[ei]",
            r"viol(?:ato|ata|ati|ate|are|ando|ano|ate|erà)",  # not "viola" (the colour)
            r"infrazion[ei]",
            r"trasgress\w+",
            r"trasgredi\w+",
        ],
        "illegal": [r"illegal(?:e|i|mente|ità)", r"illecit(?:o|a|i|e|amente)"],
        "unlawful": [r"contro la legge", r"fuorileg+e", r"contrari[oaie] alla legge"],
        "penalty": [
            r"pen[ae]",
            r"penalit(?:à|a)",
            r"penalizz\w+",
            r"punizion[ei]",
            r"puni(?:re|to|ta|ti|bile)",
        ],
        "fine": [r"mult(?:a|e|are|ato|ata|ati|eremo|erà)"],
        "prosecution": [
            r"perseguibil\w*",
            r"perseguit[oaie] (?:penalmente|legalmente|a norma)",
            r"perseguire (?:penalmente|legalmente)",
            r"procediment[oi] (?:penal[ei]|giudiziari[oi])",
            r"querel\w*",
            r"denunc(?:ia|iare|iato|iata|eremo) (?:penale|alle autorità|all'autorità)",
            r"fare causa",
            r"citare in giudizio",
            r"causa (?:legale|civile)",
            r"procura della repubblica",
        ],
        "sanction": [r"sanzion\w*"],
        "offence": [r"reat[oi]"],
        "criminal": [r"criminal(?:e|i|mente|ità)", r"crimin[ei]", r"penal(?:e|i|mente)"],
        "liability": [
            r"responsabilità (?:penale|civile|legale|giuridica)",
            r"responsabil[ei] (?:penalmente|civilmente|legalmente)",
        ],
        "legal action": [
            r"(?:prenderemo|adotteremo|intraprenderemo) (?:i |gli |dei |delle |le )?(?:\w+ )?"
            r"(?:provvedimenti|misure|azioni)",
            r"azion[ei] (?:legal[ei]|penal[ei]|giudiziari[ae])",
            r"provvedimenti (?:legali|disciplinari)",
        ],
        SPAMMING: [
            r"(?:lei|voi|tu) (?:sta|state|stai|ha|avete|hai) (?:\w+ )?(?:inviando|spedendo"
            r"|diffondendo|mandando|inviato|spedito|diffuso|mandato) (?:\w+ )?spam",
            r"(?:lei è|voi siete|tu sei) (?:uno |una |degli )?spammer",
            # Second-person verbs name the reader even without a pronoun.
            r"(?:state|stai) (?:\w+ )?(?:inviando|spedendo|diffondendo|mandando) (?:\w+ )?spam",
            r"(?:avete|hai) (?:\w+ )?(?:inviato|spedito|diffuso|mandato) (?:\w+ )?spam",
        ],
    },
    "ms": {
        "violation": [
            r"(?:me|pe|di|ter)?langgar(?:an|i|nya|annya)?",
            r"mencabul\w*",
            r"pencabulan",
        ],
        "illegal": [
            r"ilegal",
            r"haram",
            r"menyalahi undang-undang",
            r"salah di sisi undang-undang",
            r"bertentangan dengan undang-undang",
            r"tidak sah di sisi undang-undang",
        ],
        "penalty": [r"hukuman(?:nya)?", r"(?:di|meng|ter)hukum", r"penalti"],
        "fine": [r"(?:di|men)?denda(?:nya|an)?"],
        "prosecution": [
            r"(?:di|men|pen)?dakwa(?:an|nya|annya)?",  # not "pendakwah" (preacher)
            r"pendakwa ?raya",
            r"(?:di|meny)?saman(?:nya)?",
            r"(?:dibawa|membawa \w+) ke mahkamah",
        ],
        "sanction": [r"sanksi"],
        "offence": [
            r"kesalahan (?:jenayah|di bawah)",  # plain "kesalahan" is also just a mistake
            r"melakukan kesalahan",
        ],
        "criminal": [r"jenayah"],
        "liability": [
            r"liabiliti",
            r"dipertanggungjawabkan",
            r"bertanggungjawab (?:di sisi|dari segi) undang-undang",
        ],
        "lawsuit": [r"tindakan (?:undang-undang|mahkamah|perundangan|tegas)", r"tuntutan mahkamah"],
        "legal action": [r"(?:kami|pihak kami) akan (?:\w+ ){0,2}mengambil tindakan"],
        SPAMMING: [
            r"(?:anda|tuan|puan|pihak anda|syarikat anda) (?:sedang |telah |masih )?(?:menghantar"
            r"|mengirim|menyebarkan|menyebar) (?:\w+ )?spam",
            r"(?:anda|tuan|puan) (?:ialah|adalah) (?:seorang )?(?:penghantar spam|spammer)",
        ],
    },
    "bg": {
        "violation": [
            r"нарушени(?:е|я|ето|ята)",
            r"наруш\w* (?:на )?(?:\w+ )?(?:закон|законодателств|правил|разпоредб|изисквани)\w*",
            r"(?:вие )?наруш(?:авате|ихте|ил сте|или сте|ила сте)",
        ],
        "illegal": [r"незаконн?\w*", r"нелегал\w*", r"противозаконн?\w*", r"неправомерн\w*"],
        "penalty": [r"наказ\w*", r"санкци\w*"],
        "fine": [r"глоб(?:а|и|ата|ите)", r"глоб(?:яв|ен|ен[аои])\w*"],  # not "глобален" (global)
        "prosecution": [
            r"(?:съдебн|наказателн)\w* (?:преследван|производств|процедур|дел|иск)\w*",
            r"(?:съдебен|граждански) иск\w*",
            r"завед\w* (?:\w+ )?(?:иск|дело)\w*",
            r"(?:иск|дело) срещу",
            r"обвин\w*",
            r"прокуратур\w*",
        ],
        "offence": [r"престъпл\w*", r"провинени\w*"],
        "criminal": [r"престъпн\w*", r"криминал\w*"],
        "liability": [
            r"(?:административн|гражданск|юридическ|правн|имуществен)\w* отговорност\w*",
            r"търси\w* (?:\w+ )?отговорност",
        ],
        "legal action": [
            r"ще (?:предприемем|вземем|приложим) (?:\w+ ){0,2}мерки",
            r"(?:правни|съдебни|законови|принудителни) (?:мерки|действия|стъпки)",
        ],
        SPAMMING: [
            r"(?:вие|ти) (?:изпращате|разпращате|разпространявате|изпращаш|разпращаш|сте изпращали"
            r"|сте изпратили|сте разпращали|сте разпратили) (?:\w+ ){0,2}(?:спам|нежелан)\w*",
            r"(?:вие сте|ти си) (?:\w+ )?спамър\w*",
        ],
    },
    "el": {
        "violation": [r"παραβια\w*", r"παραβασ\w*", r"παραβαιν\w*", r"παραβη\w*"],
        "illegal": [r"παρανομ\w*", r"παρανοµ\w*", r"μη νομιμ\w*"],
        "unlawful": [r"αθεμιτ\w*", r"αντινομ\w*"],
        "penalty": [r"ποιν\w*", r"τιμωρ\w*"],  # ποινή, ποινικός; τιμωρία
        "fine": [r"προστιμ\w*"],
        "prosecution": [
            r"διωξ\w*",
            r"διωκ\w*",
            r"μηνυσ\w*",
            r"μηνυ(?:ω|ουμε|θειτε|θει)",
            r"αγωγ(?:η|ης|ες)",  # not "αγωγος" (pipe, conductor)
            r"εισαγγελ\w*",
        ],
        "sanction": [r"κυρωσ\w*"],  # word-initial only: not "επικυρωση" (validation)
        "offence": [r"αδικημ\w*", r"παραπτωμ\w*"],
        "criminal": [r"εγκλημ\w*", r"εγκληματ\w*"],
        "liability": [r"(?:νομικ|αστικ|ποινικ)\w* ευθυν\w*", r"υποχρεωση αποζημιωσ\w*"],
        "legal action": [
            r"θα (?:λαβουμε|παρουμε|κινηθουμε|προβουμε) (?:\w+ ){0,2}"
            r"(?:μετρα|νομικ\w*|δικαστικ\w*)",
            r"(?:νομικ|δικαστικ)\w* (?:μετρα|ενεργει\w*|βηματα|οδο|διαδικασ\w*)",
        ],
        SPAMMING: [
            r"(?:εσεις )?(?:στελνετε|αποστελλετε|διανεμετε|διαδιδετε|στειλατε|εχετε στειλει"
            r"|στελνατε|αποστειλατε) (?:\w+ ){0,2}(?:spam|ανεπιθυμητ\w*)",
            r"(?:ειστε|εισαστε) (?:\w+ )?spammer\w*",
        ],
    },
    # Substring languages: no word boundaries, so every compound containing a term is a hit
    # unless the allow-list names it.
    "ja": {
        "violation": [r"違反", r"抵触"],
        "illegal": [r"違法", r"不法", r"非合法"],
        "unlawful": [r"不正"],
        "penalty": [r"罰則", r"刑罰", r"懲罰", r"処罰"],
        "fine": [r"罰金", r"過料", r"科料", r"反則金", r"制裁金"],
        "prosecution": [
            r"訴追",
            r"起訴",
            r"告訴",
            r"告発",
            r"検挙",
            r"摘発",
            r"刑事(?:責任|告訴|告発|罰|事件|処分|手続)",
        ],
        "sanction": [r"制裁", r"行政処分"],
        "criminal": [r"犯罪"],
        "liability": [r"法的責任", r"賠償責任", r"損害賠償", r"責任を(?:問|追及)"],
        "lawsuit": [r"訴訟", r"提訴", r"裁判"],
        "legal action": [r"法的(?:措置|手段|手続)", r"断固たる(?:措置|対応)", r"厳正に対処"],
        SPAMMING: [
            r"(?:あなた|貴社|御社|お客様|貴殿|貴団体)(?:が|は|も)[^。！？\n]{0,12}?"
            r"(?:スパム|迷惑メール)(?:メール)?を(?:大量に)?(?:送信|配信|送っ|送り|送付|ばらま|拡散)",
        ],
    },
    "ko": {
        "violation": [r"위반"],
        "illegal": [r"불법", r"위법"],
        "penalty": [r"처벌", r"벌칙", r"형벌", r"징계"],
        "fine": [r"벌금", r"과태료", r"과징금", r"범칙금"],
        "prosecution": [
            r"기소",
            r"고발",
            r"고소(?:장|인|를 (?:제기|당)|당)",
            r"검찰",
            r"수사 ?기관",
            r"수사를 의뢰",
            r"형사 ?(?:처벌|고발|고소|책임|사건|소추)",
        ],
        "sanction": [r"제재"],
        "criminal": [r"범죄", r"범법"],
        "liability": [r"법적 ?책임", r"손해 ?배상", r"배상 ?책임"],
        "lawsuit": [r"소송"],
        "legal action": [
            r"법적 ?(?:조치|대응|절차)",
            r"강력(?:한|히) ?조치",
            r"엄중(?:한|히) ?(?:조치|대응)",
        ],
        SPAMMING: [
            r"(?:귀하|귀사|당신|고객님)(?:은|는|이|가|께서는|께서)\s[^.!?\n]{0,15}?스팸"
            r"[^.!?\n]{0,12}?(?:발송|전송|보내|유포|배포)(?!에\s?(?:악용|이용|사용))",
        ],
    },
    "zh-hant": {
        "violation": [r"違反|违反", r"違規|违规", r"侵權|侵权"],
        "illegal": [r"違法|违法", r"非法", r"不法"],
        "fine": [r"罰款|罚款", r"罰金|罚金", r"罰鍰|罚锾"],
        "penalty": [r"處罰|处罚", r"懲罰|惩罚", r"刑罰|刑罚", r"懲處|惩处"],
        "prosecution": [
            r"起訴|起诉",
            r"訴追",
            r"追訴",
            r"檢舉|检举",
            r"告發|告发",
            r"控告",
            r"法辦",
            r"移送(?:法辦|檢調|地檢)",
        ],
        "sanction": [r"制裁"],
        "criminal": [r"犯罪", r"刑事", r"罪行"],
        "liability": [r"法律責任|法律责任", r"賠償責任", r"損害賠償", r"追究[^。，]{0,4}責任"],
        "lawsuit": [r"訴訟|诉讼", r"法律(?:行動|途徑|程序)"],
        "legal action": [
            r"依法(?:處理|處置|究辦|追究|懲處)",
            r"(?:本機關|本局|本會|本署|我們|我方)將[^。]{0,6}採取[^。]{0,6}(?:行動|措施)",
        ],
        SPAMMING: [
            r"(?:您|你|貴公司|貴單位|貴機構|貴方)(?!的)(?:(?!被|遭|的)[^，。！？\n]){0,8}?"
            r"(?:發送|寄送|散佈|散布|傳送|散發|發出|寄出)了?(?:大量)?的?垃圾(?:郵件|信件|訊息|信)",
        ],
    },
}

# Benign phrases: a hit wholly inside one of these is not reported.
ALLOW: dict[str, list[str]] = {
    "en": [
        r"(?:is|are|was|were|be|been|being|'s|’s|looks?|looked|seems?|seemed|sounds?|works?"
        r"|worked|working|feels?|run|runs|running|doing|do|does|did|went|goes|gets?|got)"
        r"(?: (?:perfectly|quite|just|absolutely|all|totally|completely|really|also|still|now"
        r"|probably|otherwise|entirely))? fine",
        r"fine[- ]tun\w*",
        r"fine[- ]grained",
        r"fine print",
        r"fine arts?",
        r"fine line",
        r"fine (?:example|job|work|detail|details|day|weather)",
        r"fine[- ]tooth\w*",
        r"fine by (?:me|us)",
        r"fine with (?:me|us|that|this)",
        r"fine,? thanks?",
        r"no offen[cs]e",
        r"(?:take|takes|took|taken|taking) offen[cs]e",
        r"liable to (?:be|become|get|cause|fail|suffer|happen|occur|change|attract|break)",
    ],
    "de": [r"mit beschränkter haftung", r"\w*haftnotiz\w*", r"beklagen"],
    "nl": [r"straffe", r"inbreuk op de (?:beveiliging|veiligheid)"],
    "da": [r"afbød\w*"],  # afbøde: to mitigate
    "nb": [r"straffespark\w*"],
    # A security or data breach names what happened to the server, not what its owner did.
    "pl": [r"narusz\w* (?:bezpieczeństwa|integralności|poufności|danych)"],
    "lt": [
        r"pažeidžiam\w*",  # pažeidžiamumas: vulnerability, the letters' own subject
        r"(?:saugumo|duomenų) pažeidim\w*",
    ],
    "pt-br": [
        r"(?:vale|valer|valeu|valha|valerá|vai valer|valeria) (?:a )?pena",
        r"que pena",
        r"pena que",
        r"dar pena",
        r"violaç(?:ão|ões) (?:de|da) (?:segurança|dados)",
    ],
    "es": [
        r"(?:vale|valer|valdrá|valdría|merece|merecer|merecerá) la pena",
        r"qué pena",
        r"que pena",
        r"me da pena",
        r"sin pena ni gloria",
        r"(?:violaci|vulneraci)(?:ón|ones) de (?:la )?(?:seguridad|datos)",
    ],
    "fr": [
        r"à peine",
        r"(?:vaut|valoir|vaudrait|valait|vaudra) la peine",
        r"(?:pas|plus) la peine",
        r"(?:prendre|prenez|pris|prendrez) la peine",
        r"sans peine",
        r"à grand[- ]peine",
        r"de la peine à",
        r"violations? de (?:la )?(?:sécurité|données)",
    ],
    "it": [
        r"(?:vale|valere|valga|varrà|varrebbe|valeva) la pena",
        r"a mala ?pena",
        r"a malapena",
        r"pena che",
        r"che pena",
        r"violazion[ei] (?:della sicurezza|dei dati)",
    ],
    "ms": [r"pendakwah\w*"],
    "bg": [r"нарушени\w* (?:в|на) (?:работата|услугата|връзката|сигурността)"],
    "el": [r"παραβιασ\w* (?:της )?(?:ασφαλειασ|δεδομενων)"],
    "ja": [
        r"不正確",
        r"不正解",
        r"不正中継",  # 不正中継: the technical term for an open relay
        r"第三者(?:に|による|の|から)(?:よる)?[^。、]{0,4}?不正",  # misuse by third parties
    ],
    "ko": [r"전기소[비모]", r"자기소개", r"제재소"],
    "zh-hant": [r"非法人", r"違反直覺"],
}

# Web and mail addresses are not wording; "…/penalty-faq" in a link is no threat in prose.
_ADDRESS = re.compile(r"(?:https?://|www\.)[^\s<>\"']+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+", re.I)


def _compile(language: str, pattern: str) -> re.Pattern[str]:
    pattern = pattern.replace(" ", r"\s+")
    if language not in CJK_LANGUAGES:
        pattern = rf"(?<!\w)(?:{pattern})(?!\w)"
    return re.compile(pattern, re.IGNORECASE)


_COMPILED: dict[str, list[tuple[str, re.Pattern[str]]]] = {
    language: [
        (concept, _compile(language, pattern))
        for concept, patterns in rules.items()
        for pattern in patterns
    ]
    for language, rules in RULES.items()
}
_ALLOW_COMPILED: dict[str, list[re.Pattern[str]]] = {
    language: [_compile(language, pattern) for pattern in ALLOW.get(language, [])]
    for language in RULES
}
assert set(RULES) == set(LANGUAGES), "every letter language needs tone rules"


def normalize_language(language: str) -> str:
    code = language.strip().lower().replace("_", "-")
    if code not in RULES:
        raise UnknownLanguage(f"unknown language {language!r}; known: {', '.join(LANGUAGES)}")
    return code


# ---------------------------------------------------------------------------------------------
# From source to prose, keeping a map back to source offsets.
# ---------------------------------------------------------------------------------------------

_INLINE_TAGS = frozenset(
    "a abbr b bdi bdo cite code data dfn em font i kbd mark q s samp small span strong sub sup"
    " time u var wbr".split()
)
_TRANS = re.compile(r"""\{%\s*(?:trans|translate)\s+(?:"([^"]*)"|'([^']*)')""", re.S)
# Shipped files carry their e-mail subject in a first-line comment (letters.rendering): that is
# prose the recipient reads, so it is checked like the body.
_SUBJECT = re.compile(r"\{\#\s*subject:\s*(.*?)\s*\#\}", re.S)
_DJANGO_MARKUP = r"""
    (?P<comment_block>\{%\s*comment\b.*?%\}.*?\{%\s*endcomment\s*%\})
    | (?P<django_comment>\{\#.*?\#\})
    | (?P<tag>\{%.*?%\})
    | (?P<var>\{\{.*?\}\})
"""
_HTML_MARKUP = r"""
    | (?P<html_comment><!--.*?-->)
    | (?P<raw><(?P<raw_name>script|style)\b.*?</(?P=raw_name)\s*>)
    | (?P<element></?(?P<name>[a-zA-Z][\w:-]*)(?:[^>"']|"[^"]*"|'[^']*')*>)
    | (?P<doctype><![^>]*>)
    | (?P<entity>&(?:\#\d+|\#[xX][0-9a-fA-F]+|[a-zA-Z][a-zA-Z0-9]*);)
"""
_MARKUP = {
    True: re.compile(_DJANGO_MARKUP + _HTML_MARKUP, re.S | re.X),
    False: re.compile(_DJANGO_MARKUP, re.S | re.X),  # plain text: "<" and "&" are characters
}
_KINDS = (
    "comment_block",
    "django_comment",
    "tag",
    "var",
    "html_comment",
    "raw",
    "element",
    "doctype",
    "entity",
)
_LOOKS_LIKE_HTML = re.compile(
    r"<(?:!--|!doctype|/?[a-zA-Z][\w:-]*[\s/>])|&(?:#\d+|#x[0-9a-f]+|[a-z][a-z0-9]*);", re.I
)


def looks_like_html(text: str) -> bool:
    return bool(_LOOKS_LIKE_HTML.search(text))


def prose(text: str, *, html_mode: bool) -> tuple[str, list[int]]:
    """The readable text of a template and, for each of its characters, the source offset."""
    out: list[str] = []
    offsets: list[int] = []

    def emit(chunk: str, start: int, *, same_offset: bool = False) -> None:
        for i, ch in enumerate(chunk):
            out.append(ch)
            offsets.append(start if same_offset else start + i)

    pos = 0
    for m in _MARKUP[html_mode].finditer(text):
        kind = next(g for g in _KINDS if m.groupdict().get(g) is not None)
        emit(text[pos : m.start()], pos)
        pos = m.end()
        if kind == "django_comment" and (subject := _SUBJECT.fullmatch(m.group())):
            inner, inner_offsets = prose(subject.group(1), html_mode=False)
            out.extend(inner)
            offsets.extend(m.start() + subject.start(1) + o for o in inner_offsets)
            emit(" ", m.end() - 1)
        elif kind == "entity":
            emit(html.unescape(m.group()), m.start(), same_offset=True)
        elif kind == "tag" and (t := _TRANS.match(m.group())):
            # {% trans "…" %} renders its string: that is prose the recipient reads.
            group = 1 if t.group(1) is not None else 2
            emit(t.group(group), m.start() + t.start(group))
            emit(" ", m.end() - 1)
        elif kind == "element" and m.group("name").lower() in _INLINE_TAGS:
            pass  # inline markup may sit inside a word: <b>il</b>legal is still "illegal"
        else:
            emit(" ", m.start())  # block boundaries separate words
    emit(text[pos:], pos)
    return "".join(out), offsets


def _fold(text: str, language: str) -> str:
    """Lower-case, one character for one, so offsets survive; Greek also loses its accents."""
    chars = []
    for ch in text:
        low = ch.lower()
        if len(low) != 1:
            low = ch
        if language == "el":
            base = "".join(
                c for c in unicodedata.normalize("NFD", low) if not unicodedata.combining(c)
            )
            low = base if len(base) == 1 else low
            low = "σ" if low == "ς" else low
        chars.append(low)
    return "".join(chars)


# ---------------------------------------------------------------------------------------------
# The check.
# ---------------------------------------------------------------------------------------------


def reason_for(concept: str) -> str:
    return f"{CATEGORY.get(concept, LEGAL)}: '{concept}'"


def check_text(
    text: str, language: str, *, html_mode: bool | None = None, field: str = ""
) -> list[ToneIssue]:
    """Accusatory or legal-threat passages in `text`, in source order."""
    language = normalize_language(language)
    if html_mode is None:
        html_mode = looks_like_html(text)
    readable, offsets = prose(text, html_mode=html_mode)
    folded = _fold(readable, language)

    hits: list[tuple[int, int, str]] = []
    for concept, pattern in _COMPILED[language]:
        hits.extend(
            (m.start(), m.end(), concept) for m in pattern.finditer(folded) if m.end() > m.start()
        )
    allowed = [m.span() for p in _ALLOW_COMPILED[language] for m in p.finditer(folded)]
    allowed += [m.span() for m in _ADDRESS.finditer(folded)]
    hits = [h for h in hits if not any(a <= h[0] and h[1] <= b for a, b in allowed)]
    # Overlapping rules ("we will take legal action" and "legal action") make one passage,
    # named after the rule that starts first (and is widest there).
    hits.sort(key=lambda h: (h[0], -(h[1] - h[0])))
    kept: list[tuple[int, int, str]] = []
    for start, end, concept in hits:
        if kept and start < kept[-1][1]:
            kept[-1] = (kept[-1][0], max(end, kept[-1][1]), kept[-1][2])
        else:
            kept.append((start, end, concept))

    line_starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]
    issues = []
    for start, end, concept in kept:
        source_offset = offsets[start]
        line = bisect.bisect_right(line_starts, source_offset)
        issues.append(
            ToneIssue(
                line=line,
                column=source_offset - line_starts[line - 1] + 1,
                phrase=" ".join(readable[start:end].split()),
                reason=reason_for(concept),
                field=field,
            )
        )
    return issues


def language_from_path(path: str | Path) -> str | None:
    """The innermost `<lang>/` folder of a path (templates/letters/de/initial.html -> de)."""
    for part in reversed(Path(path).parts[:-1]):
        code = part.lower().replace("_", "-")
        if code in RULES:
            return code
    return None


def check_file(path: str | Path, language: str | None = None) -> list[ToneIssue]:
    path = Path(path)
    if language is None:
        language = language_from_path(path)
        if language is None:
            raise LanguageNotFound(f"{path}: no <lang>/ folder in the path; give the language")
    text = path.read_text(encoding="utf-8")
    html_mode = path.suffix.lower() in {".html", ".htm"} or looks_like_html(text)
    return check_text(text, language, html_mode=html_mode)


def tone_problems_for_template(template: Any) -> list[ToneIssue]:
    """Problems in a LetterTemplate-like object (subject, body_html, body_text, language)."""
    language = template.language
    fields: Iterable[tuple[str, str, bool]] = (
        ("subject", template.subject or "", False),
        ("body_html", template.body_html or "", True),
        ("body_text", getattr(template, "body_text", "") or "", False),
    )
    issues: list[ToneIssue] = []
    for field, text, html_mode in fields:
        issues.extend(check_text(text, language, html_mode=html_mode, field=field))
    return issues
