"""Turns whatever an image file holds into an RGB JPEG, or says why not.

Real photo collections are not clean. ImageNet's training set famously holds
a few CMYK JPEGs and a PNG named `.JPEG`, some photos are grayscale, and
user folders mix JPEG, PNG, GIF and BMP. TF-Slim's readers expect a JPEG that
decodes to 3 channels, so every converter passes each file through
`to_rgb_jpeg`:

- an RGB (YCbCr) JPEG is kept byte for byte: re-encoding would only lose
  quality;
- a CMYK or grayscale JPEG, and any PNG, GIF or BMP, is decoded to RGB and
  re-encoded as JPEG;
- a file that is none of these, or does not decode completely (truncated,
  corrupt), raises `UndecodableImageError` with the reason, for the converter
  to skip and report;
- an image whose header declares more than `MAX_IMAGE_PIXELS` pixels (a
  decompression bomb: a few kilobytes that decode to gigabytes) raises
  `ImageTooLargeError` before anything is decoded.

Decoding uses TensorFlow's own codecs, the ones the input pipeline reads the
records with, so a file accepted here also decodes at training time.

Typical use:

  image = image_coding.to_rgb_jpeg(open(path, 'rb').read())
  image.data, image.height, image.width, image.converted_from
"""

import dataclasses
import re
import struct
from typing import Optional

import tensorflow as tf

# Magic bytes of the formats TF decodes.
_SIGNATURES = (
    (b'\xff\xd8\xff', 'jpeg'),
    (b'\x89PNG\r\n\x1a\n', 'png'),
    (b'GIF87a', 'gif'),
    (b'GIF89a', 'gif'),
    (b'BM', 'bmp'),
)

# JPEG start-of-frame markers (SOF0..SOF15 except DHT, JPG and DAC): the
# segment that states the image size and number of colour components.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field.
_STANDALONE_MARKERS = frozenset(range(0xD0, 0xD8)) | {0x01, 0xD8}


# Pillow's default decompression-bomb limit (about 89.5 M pixels, 256 MiB of
# 24-bit pixels): far above any photo a classifier trains on.
MAX_IMAGE_PIXELS = int(1024 * 1024 * 1024 // 4 // 3)


class UndecodableImageError(ValueError):
  """An image file that cannot be turned into an RGB image; says why."""


class ImageTooLargeError(UndecodableImageError):
  """An image whose header declares more pixels than the limit allows."""


@dataclasses.dataclass(frozen=True)
class RgbJpeg:
  """An RGB JPEG ready for a record.

  Attributes:
    data: The JPEG bytes (3 channels).
    height: Height in pixels.
    width: Width in pixels.
    converted_from: None when `data` is the input unchanged; otherwise what
      the input was ('cmyk jpeg', 'grayscale jpeg', 'png', 'gif', 'bmp').
  """
  data: bytes
  height: int
  width: int
  converted_from: Optional[str] = None


def sniff_format(data):
  """Returns 'jpeg', 'png', 'gif' or 'bmp' from the magic bytes, else None.

  The file name is not consulted: ImageNet holds PNG data named `.JPEG`.
  """
  for signature, name in _SIGNATURES:
    if data.startswith(signature):
      return name
  return None


def jpeg_components(data):
  """Returns the number of colour components of a JPEG from its frame header.

  Reads the markers only, without decoding: 1 is grayscale, 3 is YCbCr (or
  RGB), 4 is CMYK (or YCCK).

  Args:
    data: JPEG bytes.

  Returns:
    The component count, or None if no frame header is found.
  """
  pos = 2  # After SOI.
  size = len(data)
  while pos + 4 <= size:
    if data[pos] != 0xFF:
      return None  # Lost sync: not a well-formed marker stream.
    marker = data[pos + 1]
    if marker == 0xFF:  # Fill byte before a marker.
      pos += 1
      continue
    if marker in _STANDALONE_MARKERS:
      pos += 2
      continue
    if marker == 0xDA:  # Start of scan: the frame header must have come first.
      return None
    (length,) = struct.unpack('>H', data[pos + 2:pos + 4])
    if marker in _SOF_MARKERS:
      # Segment: length(2) precision(1) height(2) width(2) components(1).
      if pos + 10 > size:
        return None
      return data[pos + 9]
    pos += 2 + length
  return None


def _jpeg_size(data):
  """(height, width) from a JPEG's frame header, or None."""
  pos, size = 2, len(data)
  while pos + 4 <= size:
    if data[pos] != 0xFF:
      return None
    marker = data[pos + 1]
    if marker == 0xFF:
      pos += 1
      continue
    if marker in _STANDALONE_MARKERS:
      pos += 2
      continue
    if marker == 0xDA:
      return None
    (length,) = struct.unpack('>H', data[pos + 2:pos + 4])
    if marker in _SOF_MARKERS:
      if pos + 9 > size:
        return None
      return struct.unpack('>HH', data[pos + 5:pos + 9])
    pos += 2 + length
  return None


def header_size(data):
  """Returns (height, width) as the file's header declares them, or None.

  Reads only the header (JPEG frame header, PNG IHDR, GIF logical screen,
  BMP info header), so it is safe on a decompression bomb.

  Args:
    data: The bytes of an image file.

  Returns:
    `(height, width)`, or None when the format is unknown or the header is cut
    short.
  """
  kind = sniff_format(data)
  if kind == 'jpeg':
    return _jpeg_size(data)
  if kind == 'png' and len(data) >= 24 and data[12:16] == b'IHDR':
    width, height = struct.unpack('>II', data[16:24])
    return height, width
  if kind == 'gif' and len(data) >= 10:
    width, height = struct.unpack('<HH', data[6:10])
    return height, width
  if kind == 'bmp' and len(data) >= 26:
    (header_bytes,) = struct.unpack('<I', data[14:18])
    if header_bytes == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes.
      width, height = struct.unpack('<hh', data[18:22])
    else:
      width, height = struct.unpack('<ii', data[18:26])
    return abs(height), abs(width)  # Negative height: top-down rows.
  return None


def check_pixel_limit(data, max_pixels=MAX_IMAGE_PIXELS):
  """Refuses an image whose header declares more than `max_pixels` pixels.

  Args:
    data: The bytes of an image file.
    max_pixels: The limit; None or 0 disables the check.

  Raises:
    ImageTooLargeError: naming the declared size and the limit.
  """
  if not max_pixels:
    return
  dims = header_size(data)
  if dims and dims[0] * dims[1] > max_pixels:
    raise ImageTooLargeError(
        f'{sniff_format(data)} header declares {dims[1]}x{dims[0]} = '
        f'{dims[0] * dims[1]} pixels, over the limit of {max_pixels} '
        '(a decompression bomb?); refused without decoding')


def _op_error_text(error):
  # TF prefixes op errors with '{{function_node ...}}' and appends
  # '[Op:DecodeImage]'; the reason is what lies between.
  text = str(getattr(error, 'message', error))
  text = re.sub(r'\{\{[^}]*\}\}|\[Op:[^\]]*\]', '', text).strip()
  return text.splitlines()[0] if text else type(error).__name__


def to_rgb_jpeg(data, quality=100, max_pixels=MAX_IMAGE_PIXELS):
  """Returns `data` as an RGB JPEG, re-encoding only when it is not one.

  Args:
    data: The bytes of an image file.
    quality: JPEG quality of re-encoded images (TF-Slim used 100 for its
      CMYK and PNG fixes, keeping the loss of a second encoding small).
    max_pixels: Images declaring more pixels are refused before decoding.

  Returns:
    An `RgbJpeg`.

  Raises:
    UndecodableImageError: naming the reason, for a file that is not a JPEG,
      PNG, GIF or BMP image or that does not decode completely.
    ImageTooLargeError: for an image over `max_pixels`.
  """
  kind = sniff_format(data)
  if kind is None:
    head = bytes(data[:8])
    raise UndecodableImageError(
        f'not a JPEG, PNG, GIF or BMP image (starts with {head!r}, '
        f'{len(data)} bytes)')
  check_pixel_limit(data, max_pixels)
  try:
    # Decoding fully is the only reliable check: a truncated JPEG has an
    # intact header. channels=3 also converts CMYK, grayscale and palettes.
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
  except (tf.errors.InvalidArgumentError, tf.errors.UnknownError,
          tf.errors.DataLossError) as e:
    raise UndecodableImageError(
        f'{kind} data does not decode: {_op_error_text(e)}') from None
  height, width = int(image.shape[0]), int(image.shape[1])
  if height == 0 or width == 0:
    raise UndecodableImageError(f'{kind} image is empty ({height}x{width})')

  if kind == 'jpeg':
    components = jpeg_components(data)
    if components == 3:
      return RgbJpeg(bytes(data), height, width, None)
    converted_from = {1: 'grayscale jpeg', 4: 'cmyk jpeg'}.get(
        components, f'jpeg with {components} components')
  else:
    converted_from = kind
  encoded = tf.io.encode_jpeg(image, format='rgb', quality=quality)
  return RgbJpeg(encoded.numpy(), height, width, converted_from)


def read_rgb_jpeg(path, quality=100):
  """Reads an image file and returns it as an RGB JPEG (see `to_rgb_jpeg`).

  Args:
    path: The image file.
    quality: JPEG quality of re-encoded images.

  Returns:
    An `RgbJpeg`.

  Raises:
    UndecodableImageError: when the file cannot be read or decoded; the
      message names the reason.
  """
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except OSError as e:
    raise UndecodableImageError(f'cannot be read: {e.strerror or e}') from None
  return to_rgb_jpeg(data, quality=quality)
