"""The tone check: accusatory and legal-threat wording is caught in all 17 letter languages,
benign look-alikes pass, and hits point at the source file's line."""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.core.management import CommandError, call_command

from letters import tone
from tests.commandline import Ran, manage

ROOT = Path(__file__).resolve().parents[2]

Accusatory = tuple[str, str | tuple[str, ...]]  # sentence, phrase(s) as found in it

# For each language: sentences a letter must never contain, with what the check must point
# at, and sentences that look close but are benign and must pass.
CASES: dict[str, tuple[list[Accusatory], list[str]]] = {
    "en": (
        [
            ("Operating an open relay is a violation of the law.", "violation"),
            ("Your company may face fines of up to $10,000.", "fines"),
            ("You are spamming thousands of recipients every day.", "You are spamming"),
            ("If the server stays open, we will take legal action.", "we will take legal action"),
            ("You have been sending spam through this server.", "You have been sending spam"),
            ("Relaying mail for strangers is illegal in many countries.", "illegal"),
            ("Operators who ignore this notice may be prosecuted.", "prosecuted"),
            ("You could be held liable for the damage.", "liable"),
            ("This is a criminal offence.", ("criminal", "offence")),
            ("You may be fined by the regulator.", "fined"),
        ],
        [
            "That is fine: reply whenever it suits you.",
            "We fine-tune our scanner so that it never disturbs normal mail.",
            "The relay domains are defined in main.cf; refine them as shown below.",
            "Spammers look for open relays, and your spam filter cannot stop outbound abuse.",
            "An open relay is liable to be blocklisted by large mail providers.",
            "Your server may have been used by others to relay spam.",
            "Everything else on your server looks perfectly fine.",
            "The fine print of most hosting contracts asks customers to keep servers secure.",
        ],
    ),
    "ja": (
        [
            ("貴社のサーバーの運用は法律に違反しています。", "違反"),
            ("このままでは罰金が科される可能性があります。", "罰金"),
            ("貴社は大量のスパムメールを送信しています。", "貴社は大量のスパムメールを送信"),
            ("改善されない場合は法的措置を取ります。", "法的措置"),
            ("オープンリレーの放置は違法行為です。", "違法"),
            ("刑事告発の対象となる場合があります。", "刑事告発"),
            ("関係者は処罰されることがあります。", "処罰"),
            ("不正なサーバー運用は許されません。", "不正"),
        ],
        [
            "不正確な情報があれば、お知らせください。",
            "この設定により、第三者による不正中継を防ぐことができます。",
            "貴社のサーバーが第三者に悪用され、迷惑メールの送信に使われた可能性があります。",
            "この通知は法的な通知ではなく、ご案内です。",
            "ご担当の責任者様にご転送ください。",
            "第三者による不正な利用を防ぐため、設定の見直しをお勧めします。",
            "修正は無料で、数分で完了します。",
        ],
    ),
    "ko": (
        [
            ("귀사의 서버 운영은 관련 법률을 위반하고 있습니다.", "위반"),
            ("조치하지 않으면 과태료가 부과될 수 있습니다.", "과태료"),
            (
                "귀하는 매일 수천 건의 스팸을 발송하고 있습니다.",
                "귀하는 매일 수천 건의 스팸을 발송",
            ),
            ("계속 방치할 경우 법적 조치를 취하겠습니다.", "법적 조치"),
            ("오픈 릴레이 운영은 불법입니다.", "불법"),
            ("형사 처벌을 받을 수 있습니다.", "형사 처벌"),
            ("검찰에 고발될 수 있습니다.", ("검찰", "고발")),
        ],
        [
            "전기소비량이 늘어날 수 있습니다.",
            "서버 책임자에게 이 안내문을 전달해 주십시오.",
            "스패머들은 열린 릴레이를 찾아 악용합니다.",
            "귀하의 서버가 제3자에 의해 스팸 발송에 악용되었을 수 있습니다.",
            "간단한 조치로 문제를 해결할 수 있습니다.",
            "귀하께서는 스팸 발송에 악용된 서버를 점검해 주시기 바랍니다.",
        ],
    ),
    "zh-hant": (
        [
            ("貴公司的伺服器設定已違反相關法規。", "違反"),
            ("若未改善，將處以罰鍰。", "罰鍰"),
            ("您每天發送大量垃圾郵件。", "您每天發送大量垃圾郵件"),
            ("本機關將依法處理。", "依法處理"),
            ("開放轉發屬於違法行為。", "違法"),
            ("相關人員可能遭到起訴。", "起訴"),
            ("您可能須負法律責任。", "法律責任"),
        ],
        [
            "非法人團體亦可申請協助。",
            "本計畫依法執行，目的在於協助您保護伺服器。",
            "垃圾郵件發送者常利用開放轉發伺服器。",
            "您的伺服器可能遭第三方濫用來發送垃圾郵件。",
            "請將本通知轉交伺服器負責人。",
            "修正設定通常不需任何費用。",
        ],
    ),
    "pt-br": (
        [
            ("Manter um relay aberto constitui violação da legislação.", "violação"),
            ("Sua empresa poderá receber multas elevadas.", "multas"),
            ("Você está enviando spam para milhares de pessoas.", "Você está enviando spam"),
            (
                "Tomaremos as medidas cabíveis caso o servidor continue aberto.",
                "Tomaremos as medidas cabíveis",
            ),
            (
                "Essa prática é ilegal e pode levar a um processo judicial.",
                ("ilegal", "processo judicial"),
            ),
            ("Os responsáveis podem ser penalizados.", "penalizados"),
            ("Os infratores serão punidos.", ("infratores", "punidos")),
        ],
        [
            "Vale a pena revisar a configuração do seu servidor.",
            "Seu servidor pode ter sido usado por terceiros para enviar spam.",
            "Todos os dados foram processados de forma automática.",
            "Sua solicitação será processada em poucos minutos.",
            "É responsabilidade de todos manter a internet segura.",
            "A correção é simples e gratuita.",
        ],
    ),
    "es": (
        [
            ("Mantener un relé abierto supone una infracción de la normativa.", "infracción"),
            ("Su empresa podría recibir una multa considerable.", "multa"),
            ("Usted está enviando spam a miles de destinatarios.", "Usted está enviando spam"),
            (
                "Emprenderemos acciones legales si el servidor sigue abierto.",
                "Emprenderemos acciones legales",
            ),
            ("Esta práctica es ilegal en muchos países.", "ilegal"),
            ("Los responsables serán sancionados.", "sancionados"),
            ("Podría enfrentarse a responsabilidad penal.", "responsabilidad penal"),
        ],
        [
            "Vale la pena revisar la configuración de su servidor.",
            "Esta vulnerabilidad es fácil de corregir.",
            "Hay una gran demanda de ancho de banda en su red.",
            "El proceso de configuración es sencillo.",
            "Su servidor podría estar siendo utilizado por terceros para enviar spam.",
            "Un servidor vulnerable atrae a quienes envían spam.",
        ],
    ),
    "de": (
        [
            ("Der Betrieb eines offenen Relays ist ein Rechtsverstoß.", "Rechtsverstoß"),
            ("Ihnen droht ein Bußgeld.", "Bußgeld"),
            (
                "Sie versenden täglich Spam an Tausende Empfänger.",
                "Sie versenden täglich Spam",
            ),
            (
                "Wir werden rechtliche Schritte einleiten.",
                "Wir werden rechtliche Schritte einleiten",
            ),
            ("Das ist strafbar.", "strafbar"),
            ("Bei Verstößen drohen Geldstrafen.", ("Verstößen", "Geldstrafen")),
            ("Sie können haftbar gemacht werden.", "haftbar"),
            ("Die Staatsanwaltschaft kann ermitteln.", "Staatsanwaltschaft"),
            ("Es droht eine Busse.", "Busse"),  # Swiss spelling
        ],
        [
            "Viele Nutzer klagen über Spam aus offenen Relays.",
            "Die Beispiel GmbH (Gesellschaft mit beschränkter Haftung) betreibt den Server.",
            "Ihr Server wird möglicherweise von Dritten missbraucht, um Spam zu versenden.",
            "Mit wenigen Änderungen lassen sich die Regeln straffen.",
            "Die Anzeige im Browser zeigt den aktuellen Status.",
            "Bis zur nächsten Prüfung vergehen einige Tage.",
            "Der Ball landete im Strafraum.",
        ],
    ),
    "nl": (
        [
            ("Het exploiteren van een open relay is een overtreding van de wet.", "overtreding"),
            ("U riskeert een boete van duizenden euro's.", "boete"),
            ("U verstuurt dagelijks spam naar duizenden adressen.", "U verstuurt dagelijks spam"),
            (
                "Wij zullen juridische stappen ondernemen.",
                "Wij zullen juridische stappen ondernemen",
            ),
            ("Dit is strafbaar.", "strafbaar"),
            ("U kunt aansprakelijk worden gesteld.", "aansprakelijk"),
            (
                "Dit kan leiden tot strafrechtelijke vervolging.",
                ("strafrechtelijke", "vervolging"),
            ),
            ("Het gaat om een illegale praktijk.", "illegale"),
        ],
        [
            "Vervolgens kunt u de configuratie opnieuw testen.",
            "In het vervolg ontvangt u geen brieven meer over deze server.",
            "Het resultaat overtreft onze verwachtingen.",
            "Uw server is mogelijk door derden misbruikt om spam te versturen.",
            "Neem gerust een straffe koffie terwijl de test loopt.",
            "Dit staat los van uw belastingaangifte.",
        ],
    ),
    "da": (
        [
            ("Drift af en åben relay er en overtrædelse af loven.", "overtrædelse"),
            ("I kan risikere en bøde.", "bøde"),
            ("I sender spam til tusindvis af modtagere.", "I sender spam"),
            ("Vi vil tage retslige skridt.", "Vi vil tage retslige skridt"),
            ("Det er ulovligt at drive en åben relay.", "ulovligt"),
            ("Bøden fastsættes af myndighederne.", "Bøden"),
            ("Det kan medføre straf.", "straf"),
        ],
        [
            "Det er helt fint, hvis I svarer senere.",
            "Vi anbefaler, at I straks opdaterer konfigurationen.",
            "Jeres server kan være misbrugt af andre til at sende spam.",
            "Den ansvarlige for serveren kan kontakte os.",
            "Tak for jeres anmeldelse af vejledningen.",
            "Hav en fin dag.",
        ],
    ),
    "nb": (
        [
            ("Å drive et åpent relé er et lovbrudd.", "lovbrudd"),
            ("Dere kan risikere en høy bot.", "risikere en høy bot"),
            ("Dere sender spam til tusenvis av mottakere.", "Dere sender spam"),
            ("Vi vil iverksette rettslige skritt.", "Vi vil iverksette rettslige skritt"),
            ("Dette er ulovlig.", "ulovlig"),
            ("Dere kan bli ilagt bøter.", "bøter"),
            ("Forholdet kan føre til straffeforfølgning.", "straffeforfølgning"),
        ],
        [
            "Det er helt fint om dere svarer senere.",
            "Et botnett kan misbruke serveren deres.",
            "Dere bør straks oppdatere konfigurasjonen.",
            "Serveren deres kan ha blitt misbrukt av andre til å sende spam.",
            "Ha en fin dag!",
            "Den ansvarlige for driften kan kontakte oss.",
            "Boten vår sjekker serveren på nytt i morgen.",
        ],
    ),
    "pl": (
        [
            ("Utrzymywanie otwartego przekaźnika stanowi naruszenie prawa.", "naruszenie"),
            ("Grozi Państwu wysoka kara finansowa.", "kara"),
            ("Państwo wysyłają spam do tysięcy odbiorców.", "Państwo wysyłają spam"),
            ("Podejmiemy kroki prawne.", "Podejmiemy kroki prawne"),
            ("Takie działanie jest nielegalne.", "nielegalne"),
            ("Grozi za to grzywna.", "grzywna"),
            ("Sprawa może trafić do prokuratury.", "prokuratury"),
            ("Może to skutkować odpowiedzialnością karną.", "odpowiedzialnością karną"),
            ("Nałożenie kar jest możliwe.", "kar"),
        ],
        [
            "Ta zmiana pozwala zablokować przekazywanie poczty przez osoby trzecie.",
            "Osoba odpowiedzialna za serwer może się z nami skontaktować.",
            "Państwa serwer mógł zostać wykorzystany przez osoby trzecie do wysyłania spamu.",
            "Ustawienie znajduje się na karcie „Sieć”.",
            "Otrzymaliśmy skargi od odbiorców.",
            "Poprawka jest bezpłatna i zajmuje kilka minut.",
        ],
    ),
    "lt": (
        [
            ("Atviro serverio naudojimas yra įstatymo pažeidimas.", "įstatymo pažeidimas"),
            ("Jums gali būti skirta bauda.", "bauda"),
            ("Jūs siunčiate šlamštą tūkstančiams gavėjų.", "Jūs siunčiate šlamštą"),
            ("Imsimės teisinių veiksmų.", "Imsimės teisinių veiksmų"),
            ("Tokia veikla yra neteisėta.", "neteisėta"),
            ("Už tai gresia baudžiamoji atsakomybė.", "baudžiamoji atsakomybė"),
            ("Tai gali būti laikoma nusikaltimu.", "nusikaltimu"),
        ],
        [
            "Šis pažeidžiamumas lengvai ištaisomas.",
            "Jūsų serverį galėjo panaudoti tretieji asmenys šlamštui siųsti.",
            "Jei informacija neteisinga, praneškite mums.",
            "Atsakingas asmuo gali susisiekti su mumis.",
            "Pataisymas nemokamas ir užtrunka kelias minutes.",
        ],
    ),
    "ms": (
        [
            ("Mengendalikan geganti terbuka adalah pelanggaran undang-undang.", "pelanggaran"),
            ("Syarikat anda boleh dikenakan denda.", "denda"),
            (
                "Anda sedang menghantar spam kepada ribuan penerima.",
                "Anda sedang menghantar spam",
            ),
            (
                "Kami akan mengambil tindakan undang-undang.",
                "Kami akan mengambil tindakan undang-undang",
            ),
            ("Perbuatan ini menyalahi undang-undang.", "menyalahi undang-undang"),
            ("Anda boleh didakwa di mahkamah.", "didakwa"),
            ("Ini merupakan satu kesalahan jenayah.", "kesalahan jenayah"),
        ],
        [
            "Pelanggan anda mungkin menerima e-mel yang tidak diingini.",
            "Pelayan anda mungkin telah disalahgunakan oleh pihak ketiga untuk menghantar spam.",
            "Terdapat kesalahan konfigurasi pada pelayan anda.",
            "Langganan anda tidak terjejas.",
            "Alamat e-mel ini tidak sah.",
            "Pembetulan ini percuma dan mudah.",
        ],
    ),
    "bg": (
        [
            ("Поддържането на отворен релей е нарушение на закона.", "нарушение на закона"),
            ("Може да ви бъде наложена глоба.", "глоба"),
            ("Вие изпращате спам до хиляди получатели.", "Вие изпращате спам"),
            ("Ще предприемем правни мерки.", "Ще предприемем правни мерки"),
            ("Това е незаконно.", "незаконно"),
            ("Това може да доведе до наказателно преследване.", "наказателно преследване"),
            ("Това е престъпление.", "престъпление"),
        ],
        [
            "Глобалната мрежа зависи от добре защитени сървъри.",
            "Искаме да ви помогнем да защитите сървъра си.",
            "Вашият сървър може да е бил използван от трети лица за изпращане на спам.",
            "Отговорното лице може да се свърже с нас.",
            "Отвореният релей може да доведе до нарушаване на работата на сървъра.",
        ],
    ),
    "el": (
        [
            ("Η λειτουργία ανοικτού αναμεταδότη αποτελεί παράβαση του νόμου.", "παράβαση"),
            ("Ενδέχεται να σας επιβληθεί πρόστιμο.", "πρόστιμο"),
            (
                "Στέλνετε ανεπιθύμητα μηνύματα σε χιλιάδες παραλήπτες.",
                "Στέλνετε ανεπιθύμητα",
            ),
            ("Θα λάβουμε νομικά μέτρα.", "Θα λάβουμε νομικά μέτρα"),
            ("Η πρακτική αυτή είναι παράνομη.", "παράνομη"),
            ("Μπορεί να ασκηθεί ποινική δίωξη.", ("ποινική", "δίωξη")),
            ("ΘΑ ΕΠΙΒΛΗΘΟΥΝ ΚΥΡΩΣΕΙΣ.", "ΚΥΡΩΣΕΙΣ"),  # capitals carry no accents
        ],
        [
            "Ο υπεύθυνος του διακομιστή μπορεί να επικοινωνήσει μαζί μας.",
            "Η επικύρωση της διεύθυνσης γίνεται αυτόματα.",
            "Ο αγωγός δεδομένων λειτουργεί κανονικά.",
            "Ο διακομιστής σας ενδέχεται να χρησιμοποιήθηκε από τρίτους για την αποστολή "
            "ανεπιθύμητων μηνυμάτων.",
            "Η διόρθωση είναι δωρεάν και απλή.",
            "Αυτή η επιστολή δεν αποτελεί νομική ειδοποίηση.",
        ],
    ),
    "fr": (
        [
            ("L'exploitation d'un relais ouvert constitue une infraction.", "infraction"),
            ("Vous vous exposez à une amende.", "amende"),
            (
                "Vous envoyez du spam à des milliers de destinataires.",
                "Vous envoyez du spam",
            ),
            ("Nous engagerons des poursuites judiciaires.", "poursuites judiciaires"),
            ("Cette pratique est illégale.", "illégale"),
            ("Vous pourriez être tenu responsable des dommages.", "tenu responsable"),
            ("Des sanctions pénales sont prévues.", ("sanctions", "pénales")),
            ("Vous avez violé la loi.", "violé"),
        ],
        [
            "Cela prend à peine cinq minutes.",
            "Cela vaut la peine de vérifier la configuration.",
            "Nous allons poursuivre nos vérifications la semaine prochaine.",
            "La procédure de correction est simple et gratuite.",
            "Votre serveur a peut-être été utilisé par des tiers pour relayer du spam.",
            "Le bouton violet lance un nouveau test.",
            "Ce n'est pas la peine de nous répondre.",
        ],
    ),
    "it": (
        [
            ("Gestire un relay aperto costituisce una violazione della legge.", "violazione"),
            ("La sua azienda rischia una multa salata.", "multa"),
            ("Lei sta inviando spam a migliaia di destinatari.", "Lei sta inviando spam"),
            ("Intraprenderemo azioni legali.", "Intraprenderemo azioni legali"),
            ("Questa pratica è illegale.", "illegale"),
            ("Si tratta di un reato.", "reato"),
            ("Sono previste sanzioni.", "sanzioni"),
            ("Il fatto è perseguibile penalmente.", ("perseguibile", "penalmente")),
        ],
        [
            "Vale la pena controllare la configurazione del server.",
            "Il nostro obiettivo è perseguire una rete più sicura.",
            "Il suo server potrebbe essere stato usato da terzi per inviare spam.",
            "Il pulsante viola avvia un nuovo controllo.",
            "La procedura di correzione è semplice e gratuita.",
            "Ci vuole a malapena qualche minuto.",
        ],
    ),
}

ACCUSATORY = [(lang, s, p) for lang, (bad, _) in CASES.items() for s, p in bad]
BENIGN = [(lang, s) for lang, (_, good) in CASES.items() for s in good]


def test_every_language_has_at_least_five_of_each() -> None:
    assert set(CASES) == set(tone.LANGUAGES)
    for lang, (bad, good) in CASES.items():
        assert len(bad) >= 5 and len(good) >= 5, lang


@pytest.mark.parametrize(("language", "sentence", "expected"), ACCUSATORY)
def test_it_catches_accusatory_wording(language: str, sentence: str, expected: object) -> None:
    # Third line of a small HTML fragment, so the line number is checked too.
    source = f'<div class="letter">\n  <p>\n    {sentence}\n  </p>\n</div>\n'
    issues = tone.check_text(source, language)
    phrases = expected if isinstance(expected, tuple) else (expected,)
    assert [i.phrase for i in issues] == list(phrases)
    assert {i.line for i in issues} == {3}
    first = issues[0]
    assert first.column == 5 + sentence.index(phrases[0])
    assert first.reason.startswith(("legal threat: '", "accusation: '"))


@pytest.mark.parametrize(("language", "sentence"), BENIGN)
def test_it_passes_benign_wording(language: str, sentence: str) -> None:
    assert tone.check_text(f"<p>{sentence}</p>", language) == []


def test_reasons_name_the_concept() -> None:
    issues = tone.check_text("You are spamming. A fine applies. This is a violation.", "en")
    assert [i.reason for i in issues] == [
        "accusation: 'you are spamming'",
        "legal threat: 'fine'",
        "legal threat: 'violation'",
    ]
    [issue] = tone.check_text("Grozi Państwu grzywna.", "pl")
    assert issue.reason == "legal threat: 'fine'"


@pytest.mark.parametrize(
    ("language", "sentence", "phrase"),
    [
        ("pl", "Stwierdziliśmy naruszenia przepisów.", "naruszenia"),
        ("pl", "Nałożono na firmę karę.", "karę"),
        ("pl", "Wysokość kary zależy od sądu.", "kary"),
        ("pl", "Firma została ukarana.", "ukarana"),
        ("lt", "Už pažeidimus skiriamos baudos.", ("pažeidimus", "baudos")),
        ("lt", "Teismas paskyrė baudą.", "baudą"),
        ("bg", "Нарушенията се наказват.", ("Нарушенията", "наказват")),
        ("bg", "Глобите са високи.", "Глобите"),
        ("el", "Οι παραβάσεις τιμωρούνται.", ("παραβάσεις", "τιμωρούνται")),
        ("el", "Τα πρόστιμα είναι υψηλά.", "πρόστιμα"),
        ("de", "Datenschutzverstöße werden geahndet.", "Datenschutzverstöße"),
        ("de", "Die Vertragsstrafe ist fällig.", "Vertragsstrafe"),
        ("de", "Gesetzesverstoss festgestellt.", "Gesetzesverstoss"),
        ("nl", "De boetes lopen op.", "boetes"),
        ("nl", "Dit vormt een inbreuk op de wet.", "inbreuk"),
        ("da", "Bøderne er høje.", "Bøderne"),
        ("da", "Overtrædelsen er alvorlig.", "Overtrædelsen"),
        ("nb", "Lovbruddet er alvorlig.", "Lovbruddet"),
        ("nb", "Overtredelsene er registrert.", "Overtredelsene"),
        ("pt-br", "As infrações foram registradas.", "infrações"),
        ("pt-br", "A empresa foi multada.", "multada"),
        ("es", "Las sanciones son graves.", "sanciones"),
        ("es", "Fue multado dos veces.", "multado"),
        ("it", "Le multe sono salate.", "multe"),
        ("it", "Sono previste pene severe.", "pene"),
        ("fr", "Les amendes sont lourdes.", "amendes"),
        ("fr", "Ces pratiques sont illicites.", "illicites"),
        ("ms", "Pelanggaran ini dikenakan hukuman.", ("Pelanggaran", "hukuman")),
        ("ms", "Syarikat itu didenda.", "didenda"),
        ("en", "The violators were penalised.", ("violators", "penalised")),
        ("ja", "罰則が適用されます。", "罰則"),
        ("ko", "벌금형에 처해질 수 있습니다.", "벌금"),
        ("zh-hant", "可能面臨罰款及刑事責任。", ("罰款", "刑事")),
        ("fr", "C&#39;est ill&eacute;gal.", "illégal"),  # entities decoded, no tag needed
        ("it", "Avete inviato spam.", "Avete inviato spam"),  # the verb names the reader
        ("es", "Has enviado spam.", "Has enviado spam"),
        ("en", "You’re spamming people.", "You’re spamming"),
        ("en", "We will take action.", "We will take action"),
    ],
)
def test_it_catches_inflected_and_compound_forms(
    language: str, sentence: str, phrase: str | tuple[str, ...]
) -> None:
    phrases = phrase if isinstance(phrase, tuple) else (phrase,)
    assert [i.phrase for i in tone.check_text(sentence, language)] == list(phrases)


@pytest.mark.parametrize(
    ("language", "sentence"),
    [
        ("en", "That is fine."),
        ("en", "It works just fine."),
        ("en", "We fine-tuned the checks."),
        ("en", "No offence is meant."),
        ("en", "See https://example.org/penalty-faq or write to fines@example.org."),
        ("da", "Det er fint."),
        ("nb", "Det er fint."),
        ("de", "Der Ball landete im Strafraum."),
        ("de", "Die Haftnotiz liegt bei."),
        ("nb", "Han scoret på straffespark."),
        ("ja", "不正確な箇所があればご指摘ください。"),
        ("ko", "간단한 자기소개를 부탁드립니다."),
        ("zh-hant", "非法人團體也可聯絡我們。"),
        ("pt-br", "Vale a pena conferir."),
        ("es", "Merece la pena comprobarlo."),
        ("fr", "Ce n'est plus la peine."),
        ("it", "Ne vale la pena."),
        ("en", "We will take no further action."),
        ("da", "En tiltalende løsning kan afbøde skaderne."),
        ("de", "Viele beklagen sich über Spam; unerlaubte Nutzung durch Dritte ist häufig."),
        ("fr", "Nous annonçons la poursuite de nos analyses."),
        # A security or data breach happened to the server; it is not the owner's offence.
        ("pl", "Otwarty przekaźnik może prowadzić do naruszenia bezpieczeństwa."),
        ("el", "Υπάρχει κίνδυνος παραβίασης της ασφάλειας."),
        ("es", "Existe riesgo de una vulneración de la seguridad."),
        ("it", "Esiste il rischio di una violazione dei dati."),
        ("pt-br", "Existe risco de violação de dados."),
        ("lt", "Galimas saugumo pažeidimas."),
        ("bg", "Има риск от нарушение на сигурността."),
        ("nl", "Er is een risico op een inbreuk op de beveiliging."),
        ("fr", "Une violation de données reste possible."),
        ("it", "Il server ha inviato spam per conto di terzi."),
        ("en", "We hope you will take action soon."),
    ],
)
def test_the_allow_list_passes_benign_uses(language: str, sentence: str) -> None:
    assert tone.check_text(sentence, language) == []


def test_the_allow_list_does_not_hide_the_real_thing_nearby() -> None:
    issues = tone.check_text("That is fine. There is a fine of 500 euros.", "en")
    assert [(i.phrase, i.column) for i in issues] == [("fine", 26)]


HTML = """\
{% extends "letters/base.html" %}
{% load i18n %}
{# A fine example of a comment: never rendered. #}
<!-- violation in an HTML comment is not read by anyone -->
{% comment %}
  penalty: commented out
{% endcomment %}
<style>.penalty { color: red }</style>
<p>Dear {{ owner.name }},</p>
<p>We found an open relay at {{ finding.ip }}.
   Operating it may be a <strong>violation</strong>
   of the law{% if partner.is_lead %}, and we will take
   legal action{% endif %}.</p>
<p>That is fine &amp; il<b>legal</b> at once; the fine&nbsp;is {{ amount }}.</p>
<p>{% trans "You are spamming." %}</p>
<a href="https://example.org/sanctions/{{ token }}">Check the fix</a>
"""


def test_html_templates_keep_source_lines() -> None:
    issues = tone.check_text(HTML, "en")
    assert [(i.line, i.phrase) for i in issues] == [
        (11, "violation"),
        (12, "we will take legal action"),
        (14, "illegal"),
        (14, "fine"),
        (15, "You are spamming"),
    ]
    by_phrase = {i.phrase: i for i in issues}
    assert by_phrase["violation"].column == HTML.splitlines()[10].index("violation") + 1
    assert by_phrase["illegal"].column == HTML.splitlines()[13].index("il<b>") + 1
    assert by_phrase["we will take legal action"].column == HTML.splitlines()[11].index("we") + 1


def test_plain_text_keeps_angle_brackets_and_strips_template_syntax() -> None:
    text = "Hello {{ name }},\n<https://example.org/fines>\n{% if x %}A fine applies.{% endif %}\n"
    issues = tone.check_text(text, "en", html_mode=False)
    assert [(i.line, i.column, i.phrase) for i in issues] == [(3, 13, "fine")]


def test_multi_line_phrases_are_reported_on_their_first_line() -> None:
    issues = tone.check_text("<p>Sie versenden\n   täglich Spam.</p>", "de")
    assert [(i.line, i.phrase) for i in issues] == [(1, "Sie versenden täglich Spam")]


def test_unknown_language_is_refused() -> None:
    with pytest.raises(tone.UnknownLanguage):
        tone.check_text("hello", "tr")
    assert tone.normalize_language("pt-BR") == "pt-br"
    assert tone.normalize_language("zh_Hant") == "zh-hant"


def test_rules_that_cannot_load_stop_the_check_rather_than_pass_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The tone check guards approval: a missing or empty rules file fails closed.
    for language in tone.LANGUAGES:
        (tmp_path / f"{language}.toml").write_bytes(
            (tone.RULES_DIR / f"{language}.toml").read_bytes()
        )
    monkeypatch.setattr(tone, "RULES_DIR", tmp_path)
    assert set(tone._load_rules()[0]) == set(tone.LANGUAGES)  # the copy loads
    (tmp_path / "de.toml").write_text("[allow]\npatterns = []\n", encoding="utf-8")
    with pytest.raises(RuntimeError, match="de.toml: no \\[rules\\] table"):
        tone._load_rules()
    (tmp_path / "de.toml").unlink()
    with pytest.raises(FileNotFoundError):
        tone._load_rules()


def test_check_file_takes_the_language_from_the_folder(tmp_path: Path) -> None:
    path = tmp_path / "templates" / "letters" / "de" / "initial.html"
    path.parent.mkdir(parents=True)
    path.write_text("<p>Hallo,</p>\n<p>Ihnen droht ein Bußgeld.</p>\n", encoding="utf-8")
    assert tone.language_from_path(path) == "de"
    [issue] = tone.check_file(path)
    assert (issue.line, issue.phrase) == (2, "Bußgeld")
    assert tone.check_file(path, "en") == []  # an explicit language wins
    loose = tmp_path / "initial.html"
    loose.write_text("<p>fine</p>", encoding="utf-8")
    with pytest.raises(tone.LanguageNotFound):
        tone.check_file(loose)
    assert tone.language_from_path(tmp_path / "zh-hant" / "fixed.html") == "zh-hant"


def test_tone_problems_for_template_checks_every_field() -> None:
    template = SimpleNamespace(
        language="fr",
        subject="Avis : amende possible",
        body_html="<p>Bonjour,</p>\n<p>Vous envoyez du spam.</p>",
        body_text="Bonjour,\n\nCela vaut la peine de vérifier.\nDes poursuites sont possibles.",
    )
    issues = tone.tone_problems_for_template(template)
    assert [(i.field, i.line, i.phrase) for i in issues] == [
        ("subject", 1, "amende"),
        ("body_html", 2, "Vous envoyez du spam"),
        ("body_text", 4, "poursuites"),
    ]
    assert issues[0].as_dict()["reason"] == "legal threat: 'fine'"
    clean = SimpleNamespace(
        language="en", subject="Hi", body_html="<p>Fine-tune it.</p>", body_text=""
    )
    assert tone.tone_problems_for_template(clean) == []


# ----------------------------------------------------------------------------- the command


def _write(root: Path, relative: str, text: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _run(*args: str) -> Ran:
    return manage("check_tone", *args)


def test_command_exit_statuses_and_output_format(tmp_path: Path) -> None:
    bad = _write(tmp_path, "pl/initial.html", "<p>Dzień dobry,</p>\n<p>Grozi Państwu kara.</p>\n")
    good = _write(tmp_path, "pl/fixed.html", "<p>Dziękujemy, wszystko w porządku.</p>\n")
    loose = _write(tmp_path, "reminder.html", "<p>Hello</p>\n")

    r = _run(str(bad), str(good))
    assert r.returncode == 1, r.stderr
    assert r.stdout == f"{bad}:2: \"kara\" (legal threat: 'penalty')\n"

    r = _run(str(good))
    assert (r.returncode, r.stdout) == (0, "")

    r = _run(str(loose))
    assert r.returncode == 2
    assert str(loose) in r.stderr

    r = _run("--language", "en", str(loose))
    assert r.returncode == 0, r.stderr

    r = _run("--language", "xx", str(good))
    assert r.returncode == 2
    assert "xx" in r.stderr


def test_command_language_option_overrides_the_folder(tmp_path: Path) -> None:
    path = _write(tmp_path, "en/initial.txt", "Ihnen droht ein Bußgeld.\n")
    out = StringIO()
    call_command("check_tone", str(path), stdout=out)  # English rules: nothing
    assert out.getvalue() == ""
    with pytest.raises(CommandError) as caught:
        call_command("check_tone", "--language", "de", str(path), stdout=out)
    assert caught.value.returncode == 1
    assert out.getvalue() == f"{path}:1: \"Bußgeld\" (legal threat: 'fine')\n"


def test_command_walks_folders(tmp_path: Path) -> None:
    _write(tmp_path, "letters/ja/initial.html", "<p>\n罰金が科されます。\n</p>\n")
    _write(tmp_path, "letters/ko/initial.html", "<p>안녕하세요.</p>\n")
    _write(tmp_path, "letters/ko/notes.md", "벌금\n")  # not a template
    out = StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("check_tone", str(tmp_path / "letters"), stdout=out)
    assert caught.value.returncode == 1
    path = tmp_path / "letters" / "ja" / "initial.html"
    assert out.getvalue() == f"{path}:2: \"罰金\" (legal threat: 'fine')\n"


def test_command_missing_language_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "drafts/initial.html", "<p>Hello</p>\n")
    with pytest.raises(CommandError) as caught:
        call_command("check_tone", str(path), stdout=StringIO())
    assert caught.value.returncode == 2
    assert str(path) in str(caught.value)


@pytest.mark.django_db
def test_command_checks_stored_templates() -> None:
    from campaign.models import Partner
    from letters.models import LetterTemplate

    LetterTemplate.objects.all().delete()  # only this test's rows
    partner = Partner.objects.create(
        country="BG", country_name="Bulgaria", agency="Агенция", languages=["bg", "en"]
    )
    bad = LetterTemplate.objects.create(
        partner=partner,
        kind="initial",
        language="bg",
        subject="Глоба за отворен релей",
        body_html="<p>Здравейте,</p>\n<p>Вие изпращате спам.</p>",
        body_text="Здравейте,\nВие изпращате спам.",
    )
    LetterTemplate.objects.create(
        partner=partner,
        kind="initial",
        language="en",
        subject="Your mail server can be misused",
        body_html="<p>That is fine: the fix takes minutes.</p>",
    )
    out = StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("check_tone", stdout=out)
    assert caught.value.returncode == 1
    name = f"template:{bad.id}:BG/initial/bg"
    assert out.getvalue().splitlines() == [
        f"{name}/subject:1: \"Глоба\" (legal threat: 'fine')",
        f"{name}/body_html:2: \"Вие изпращате спам\" (accusation: 'you are spamming')",
        f"{name}/body_text:2: \"Вие изпращате спам\" (accusation: 'you are spamming')",
    ]

    out = StringIO()
    call_command("check_tone", "--language", "en", stdout=out)  # only the clean English one
    assert out.getvalue() == ""


def test_the_subject_comment_of_a_shipped_file_is_checked() -> None:
    source = "{# subject: Avviso di multa ({{ reference }}) #}\n<p>Gentile cliente,</p>\n"
    [issue] = tone.check_text(source, "it")
    assert (issue.line, issue.column, issue.phrase) == (1, 23, "multa")
    assert tone.check_text("{# note: multa #}\n<p>Salve</p>", "it") == []


SHIPPED = sorted((ROOT / "templates" / "letters").glob("*/*.html"))


@pytest.mark.parametrize("path", SHIPPED, ids=[f"{p.parent.name}/{p.name}" for p in SHIPPED])
def test_every_shipped_template_passes(path: Path) -> None:
    language = tone.language_from_path(path)
    assert language is not None, f"{path} is not under a known <lang>/ folder"
    assert tone.check_file(path) == []
