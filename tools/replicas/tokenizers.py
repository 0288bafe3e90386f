"""Small tokenizers built offline for the random-weight replicas, since the real ones cannot be fetched.

SentencePiece models (SigLIP's `spiece.model`, Gemma's `tokenizer.model`, XLM-R's
`sentencepiece.bpe.model`) are trained with the `sentencepiece` trainer on the bilingual
English/Spanish text below; WordPiece vocabularies (multilingual DistilBERT's `vocab.txt`) are made of
that text's words and characters. Tiny replicas keep these small vocabularies; `b32` replicas pad them
with never-produced `<unusedN>` entries up to the real vocabulary size, so the embedding matrices have
the real shape and every id the model knows has a token. Both trainers run single-threaded on fixed
input, so the same call writes the same files.
"""
from __future__ import annotations

import io
import re
import string

# Photo captions and search phrases in English and Spanish (with its accents, ñ, ¿ and ¡), the
# languages the multilingual tests query in.
CORPUS = (
    "a red car parked in the street",
    "un coche rojo aparcado en la calle",
    "a dog running on the beach at sunset",
    "un perro corriendo en la playa al atardecer",
    "two cats sleeping on a blue sofa",
    "dos gatos durmiendo en un sofá azul",
    "a child riding a bicycle in the park",
    "un niño montando en bicicleta en el parque",
    "snow on the mountains in winter",
    "nieve en las montañas en invierno",
    "a bowl of fresh fruit on the kitchen table",
    "un cuenco de fruta fresca en la mesa de la cocina",
    "an old bridge over a quiet river",
    "un puente viejo sobre un río tranquilo",
    "people walking through a busy market",
    "gente caminando por un mercado lleno",
    "a yellow flower in the garden after the rain",
    "una flor amarilla en el jardín después de la lluvia",
    "the city skyline at night with bright lights",
    "el horizonte de la ciudad de noche con luces brillantes",
    "a birthday cake with candles",
    "una tarta de cumpleaños con velas",
    "a woman reading a book by the window",
    "una mujer leyendo un libro junto a la ventana",
    "green hills under a cloudy sky",
    "colinas verdes bajo un cielo nublado",
    "a boat on the lake in the morning",
    "un barco en el lago por la mañana",
    "my grandmother's house in the village",
    "la casa de mi abuela en el pueblo",
    "a photo of the family at the wedding",
    "una foto de la familia en la boda",
    "where is the train station?",
    "¿dónde está la estación de tren?",
    "what a beautiful view!",
    "¡qué vista tan bonita!",
    "a black and white photograph of a street",
    "una fotografía en blanco y negro de una calle",
    "the horse is eating grass near the fence",
    "el caballo está comiendo hierba cerca de la valla",
    "children playing football in the school yard",
    "niños jugando al fútbol en el patio del colegio",
    "a cup of coffee and a croissant for breakfast",
    "una taza de café y un cruasán para desayunar",
    "the lighthouse on the rocky coast",
    "el faro en la costa rocosa",
    "an airplane flying above the clouds",
    "un avión volando sobre las nubes",
    "autumn leaves on the forest path",
    "hojas de otoño en el camino del bosque",
    "A Red Car, A Blue Sky: Summer 2024",
    "Un Coche Rojo, Un Cielo Azul: Verano 2024",
)
# Padding entries use a shape no text produces, so they never change how text is tokenized.
UNUSED = "<unused{}>"
WORDPIECE_SPECIALS = ("[PAD]", *(f"[unused{i}]" for i in range(1, 100)), "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def sentencepiece_model(model_type: str, vocab_size: int, pad_to: int | None = None, **options) -> bytes:
    """A serialized SentencePiece model trained on CORPUS; padded to `pad_to` pieces when given.

    `vocab_size` is an upper bound (the trainer stops where the text runs out of pieces); `options`
    are trainer flags such as the ids and names of the special pieces.
    """
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS), model_writer=model, model_type=model_type, vocab_size=vocab_size,
        hard_vocab_limit=False, character_coverage=1.0, num_threads=1, minloglevel=2, **options,
    )
    data = model.getvalue()
    return data if pad_to is None else _padded(data, pad_to)


def _padded(model: bytes, size: int) -> bytes:
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto()
    proto.ParseFromString(model)
    if len(proto.pieces) > size:
        raise ValueError(f"the trained model has {len(proto.pieces)} pieces, more than the {size} asked for")
    # UNUSED pieces are never emitted by SentencePiece, and the lowest score keeps any converted
    # (tokenizers-library) vocabulary from preferring them either.
    lowest = min(piece.score for piece in proto.pieces) - 1.0
    for index in range(size - len(proto.pieces)):
        proto.pieces.add(piece=UNUSED.format(index), score=lowest, type=pb.ModelProto.SentencePiece.UNUSED)
    proto.trainer_spec.vocab_size = size
    return proto.SerializeToString()


def wordpiece_vocab(size: int | None = None) -> list[str]:
    """A cased WordPiece vocabulary in multilingual BERT's order (specials at their real ids).

    Every word of CORPUS is one token; any other word made of its characters falls back to single
    characters and `##` continuations, as WordPiece does with rare words.
    """
    words = sorted({word for line in CORPUS for word in re.findall(r"\w+|[^\w\s]", line)})
    # Every ASCII letter and digit too, so words outside CORPUS split into pieces rather than [UNK].
    chars = sorted({char for line in CORPUS for char in line if not char.isspace()}
                   | set(string.ascii_letters + string.digits))
    vocab = list(WORDPIECE_SPECIALS)
    vocab += [token for token in (*chars, *(f"##{char}" for char in chars), *words) if token not in vocab]
    vocab = list(dict.fromkeys(vocab))
    if size is not None:
        if len(vocab) > size:
            raise ValueError(f"the vocabulary has {len(vocab)} tokens, more than the {size} asked for")
        # multilingual BERT itself numbers its unused tokens on from [unused1]; continue that.
        vocab += [f"[unused{index}]" for index in range(100, 100 + size - len(vocab))]
    return vocab
