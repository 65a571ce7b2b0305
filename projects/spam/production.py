"""The traffic `make simulate` sends the spam classifier: held-out messages and, drifted, a new
campaign. With drift strength s, a share 0.6 s of the messages come from a new campaign (crypto
airdrops, wallets, seed phrases: words the SMS collection never uses, and messages several times
longer). The true label of a share of the predictions arrives later, as feedback."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from monitoring.simulate import (
    Service,
    Window,
    batches,
    counts,
    logged_rows,
    predictions_like,
    require,
    sample,
    write_feedback,
)
from projects.core.cli import StageError
from projects.spam import config, data

NAME = config.NAME
# drift at full strength (s = 1) scales linearly with s
CAMPAIGN_SHARE = 0.6
BATCH = 20

CAMPAIGN_LENGTH = (250, 600)
CAMPAIGN_BRANDS = ("Zyntrex", "Kryvora", "Moonvexa", "Nexolith", "Quorbit", "Solvanta", "Xandora")
# The words that make the campaign new: none occurs in the SMS Spam Collection (a test checks).
CAMPAIGN_VOCABULARY = (
    "airdrop", "staking", "presale", "whitelist", "snapshot", "metamask", "ledger", "mainnet",
    "apy", "nft", "nfts", "ethereum", "solana", "polygon", "liquidity", "onchain", "validator",
    "web3", "hodlers", "tokens", "allocation", "allocations", "xyz", "lockup", "permissionless",
)  # fmt: skip
CAMPAIGN_SENTENCES = (
    "The {brand} airdrop is live: {amount} ${ticker} tokens are reserved for your address.",
    "Connect your MetaMask or Ledger wallet at {url} before the snapshot closes.",
    "Staking on the {brand} mainnet now pays {apy}% APY with no lockup and zero gas.",
    "Whitelist spots for the {brand} NFT presale are almost gone, mint yours at {url}.",
    "To sync your wallet, enter your 12-word seed phrase at {url} and confirm ownership.",
    "Holders of Ethereum, Solana or Polygon NFTs get a bonus allocation of ${ticker}.",
    "Gas is covered by the {brand} treasury for the first {hours} hours of the airdrop.",
    "Leftover ${ticker} allocations are burned when the liquidity unlocks at {hour}:00 UTC.",
    "Bridge your tokens to {brand} and earn validator yield onchain, fully permissionless.",
    "Web3 moves fast: hodlers who wait for the snapshot miss their ${ticker} allocation.",
)
CAMPAIGN_CLOSING = "Claim your ${ticker} airdrop now: {url}"


def campaign_message(rng: np.random.Generator) -> str:
    """One message of the new spam campaign, 250 to 600 characters long."""
    brand = str(rng.choice(CAMPAIGN_BRANDS))
    slots = {
        "brand": brand,
        "ticker": brand[:4].upper(),
        "url": f"https://claim-{brand.lower()}.xyz/{rng.integers(10_000, 99_999)}",
        "amount": f"{rng.integers(5, 500) * 100:,}",
        "apy": rng.integers(40, 400),
        "hours": rng.integers(12, 72),
        "hour": f"{rng.integers(0, 24):02d}",
    }
    target = rng.integers(CAMPAIGN_LENGTH[0], CAMPAIGN_LENGTH[1] + 1)
    sentences: list[str] = []
    closing = CAMPAIGN_CLOSING.format(**slots)
    for index in rng.permutation(len(CAMPAIGN_SENTENCES)):
        sentences.append(CAMPAIGN_SENTENCES[index].format(**slots))
        if len(" ".join([*sentences, closing])) >= target:
            break
    # past the longest length, the last sentence goes: what is left is still over the shortest,
    # since every sentence is far shorter than the gap between the two
    if len(" ".join([*sentences, closing])) > CAMPAIGN_LENGTH[1]:
        sentences.pop()
    return " ".join([*sentences, closing])


@dataclass(frozen=True)
class SpamWindow:
    """The texts of a window, their true labels, and how many come from the new campaign."""

    texts: list[str]
    labels: list[str]
    campaign: int


def spam_requests(messages: pd.DataFrame, n: int, s: float, rng: np.random.Generator) -> SpamWindow:
    """`n` held-out messages, a share 0.6 s of them replaced by the new campaign's (spam)."""
    chosen = sample(len(messages), n, rng)
    texts = messages["text"].to_numpy()[chosen].tolist()
    labels = messages["label"].to_numpy()[chosen].tolist()
    campaign = round(CAMPAIGN_SHARE * s * n)
    for i in rng.choice(n, campaign, replace=False):
        texts[i], labels[i] = campaign_message(rng), "spam"
    return SpamWindow(texts, labels, campaign)


def load() -> pd.DataFrame:
    """Spam's held-out messages."""
    path = config.PREPARED_DIR / "test.csv"
    require(path)
    messages = data.read_messages(path)
    if messages.empty:
        raise StageError(f"{path} holds no messages: run `make run`")
    return messages


def send(service: Service, window: SpamWindow) -> tuple[list[tuple[str, str]], Counter[str]]:
    """Classify the window's texts in batches; the (prediction id, true label) of each text."""
    predictions = []
    stats = counts("predictions", "requests", "campaign texts", "predicted spam")
    for texts, labels in zip(
        batches(window.texts, BATCH), batches(window.labels, BATCH), strict=True
    ):
        answer = service.post("classify", {"texts": texts})
        for result, label in zip(answer["results"], labels, strict=True):
            predictions.append((result["prediction_id"], label))
            stats["predicted spam"] += result["label"] == "spam"
        stats["requests"] += 1
    stats["predictions"], stats["campaign texts"] = len(predictions), window.campaign
    return predictions, stats


def window(messages: pd.DataFrame, service: Service, window: Window) -> Counter[str]:
    """Send one window of spam traffic and write its delayed labels."""
    requests = spam_requests(messages, window.n, window.s, window.rng)
    predictions, stats = send(service, requests)
    stats["labels written"] = write_feedback(
        NAME, predictions, window.label_share, window.feedback_rng
    )
    return stats


# --- a day of logged requests without a service (bench/monitoring_speed.py) ---------------


def logged_records(
    n: int, reference: pd.DataFrame, context: dict[str, Any], rng: np.random.Generator
) -> tuple[list[dict[str, Any]], np.ndarray]:
    """`/classify` records of held-out messages, and each one's true label."""
    messages = pd.read_csv(config.PREPARED_DIR / "test.csv")
    chosen = messages.iloc[rng.integers(0, len(messages), n)].reset_index(drop=True)
    truth = chosen["label"].to_numpy()
    predicted = predictions_like(truth, reference, ["spam_probability", "label"], rng)
    records = logged_rows(n, str(context["champion_version"]), rng)
    for record, text, p, label in zip(
        records, chosen["text"], predicted["spam_probability"], predicted["label"], strict=True
    ):
        record |= {"route": "classify", "text": text, "text_length": len(text), "label": label,
                   "spam_probability": float(p)}  # fmt: skip
    return records, truth
