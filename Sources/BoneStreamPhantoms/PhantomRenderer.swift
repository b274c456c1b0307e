import BoneStreamCore
import BoneStreamImage
import Foundation

/// How one phantom radiograph is taken: image size, hand placement and exposure. All drawn from
/// the subject's own random stream, so a phantom depends only on (seed, id).
struct Exposure {
    var width: Int
    var height: Int
    var handLength: Double  // pixels from wrist crease to middle fingertip
    var centreX: Double     // wrist crease, pixels
    var centreY: Double
    var rotation: Double    // radians
    var background: Double  // gray level of open field
    var span: Double        // gray levels from open field to full attenuation
    var gamma: Double
    var attenuation: Double // film response per unit of hand-length thickness
    var noise: Double
}

/// Rasterises a `HandModel` into a radiograph-like 8-bit image: thicknesses add up in an
/// attenuation map, which an exponential film response turns into gray levels; then the
/// collimator borders, burnt-in labels and noise that a crop and CLAHE must cope with.
enum PhantomRenderer {
    static func render(hand: HandModel, exposure e: Exposure, random: inout CounterRandom) -> GrayImage {
        let w = e.width, h = e.height
        var attenuation = [Float](repeating: 0, count: w * h)  // (h, w)
        let cosT = cos(e.rotation), sinT = sin(e.rotation)
        // Hand coordinates of a pixel centre (px, py):
        //   u = (px - cx) / L, v = (cy - py) / L, x = u cos + v sin, y = -u sin + v cos.
        func toPixel(_ p: HandPoint) -> (Double, Double) {
            let u = p.x * cosT - p.y * sinT, v = p.x * sinT + p.y * cosT
            return (e.centreX + e.handLength * u, e.centreY - e.handLength * v)
        }
        func box(_ points: [HandPoint], margin: Double) -> (Int, Int, Int, Int)? {
            let pixels = points.map(toPixel)
            let pad = margin * e.handLength + 2
            let x0 = max(0, Int((pixels.map(\.0).min()! - pad).rounded(.down)))
            let x1 = min(w - 1, Int((pixels.map(\.0).max()! + pad).rounded(.up)))
            let y0 = max(0, Int((pixels.map(\.1).min()! - pad).rounded(.down)))
            let y1 = min(h - 1, Int((pixels.map(\.1).max()! + pad).rounded(.up)))
            return x0 <= x1 && y0 <= y1 ? (x0, x1, y0, y1) : nil
        }
        let inverseL = 1 / e.handLength

        attenuation.withUnsafeMutableBufferPointer { buffer in
            for primitive in hand.primitives() {
                switch primitive {
                case let .rod(a, b, radius, waist, density, hollow, medulla):
                    guard let (x0, x1, y0, y1) = box([a, b], margin: radius * (1 + abs(waist))) else { continue }
                    let abx = b.x - a.x, aby = b.y - a.y
                    let inverseAB2 = 1 / max(abx * abx + aby * aby, 1e-12)
                    for py in y0...y1 {
                        let v = (e.centreY - Double(py)) * inverseL
                        for px in x0...x1 {
                            let u = (Double(px) - e.centreX) * inverseL
                            let x = u * cosT + v * sinT, y = -u * sinT + v * cosT
                            let t = min(1, max(0, ((x - a.x) * abx + (y - a.y) * aby) * inverseAB2))
                            let dx = x - (a.x + t * abx), dy = y - (a.y + t * aby)
                            let d2 = dx * dx + dy * dy
                            let r = radius * (1 - waist * 4 * t * (1 - t))
                            guard d2 < r * r else { continue }
                            var thickness = 2 * (r * r - d2).squareRoot()
                            if hollow > 0 {
                                let ri = r * hollow
                                if d2 < ri * ri { thickness -= (1 - medulla) * 2 * (ri * ri - d2).squareRoot() }
                            }
                            buffer[py * w + px] += Float(density * thickness)
                        }
                    }
                case let .blob(centre, semiMajor, semiMinor, angle, depth, density):
                    guard let (x0, x1, y0, y1) = box([centre], margin: max(semiMajor, semiMinor)) else { continue }
                    let ca = cos(angle), sa = sin(angle)
                    let half = depth ?? semiMinor
                    for py in y0...y1 {
                        let v = (e.centreY - Double(py)) * inverseL
                        for px in x0...x1 {
                            let u = (Double(px) - e.centreX) * inverseL
                            let dx = u * cosT + v * sinT - centre.x, dy = -u * sinT + v * cosT - centre.y
                            let along = (dx * ca + dy * sa) / semiMajor, across = (-dx * sa + dy * ca) / semiMinor
                            let s = along * along + across * across
                            guard s < 1 else { continue }
                            buffer[py * w + px] += Float(density * 2 * half * (1 - s).squareRoot())
                        }
                    }
                }
            }
        }

        // Film response, with a gentle exposure gradient across the field (the heel effect).
        var pixels = [UInt8](repeating: 0, count: w * h)
        let gradient = random.uniform(-0.15, 0.15)
        let k = Float(e.attenuation), span = Float(e.span), bg = Float(e.background), gamma = Float(e.gamma)
        let noiseScale = Float(e.noise)
        let noiseSeed = random.next()
        for py in 0..<h {
            var row = CounterRandom(seed: noiseSeed, UInt64(py))
            let heel = 1 + Float(gradient) * (Float(py) / Float(h) - 0.5)
            for px in 0..<w {
                let a = attenuation[py * w + px]
                let film = 1 - expf(-k * a)
                // Sum of four uniforms: a cheap, deterministic near-Gaussian (variance 1/3 -> scale by sqrt 3).
                let r = row.next()
                let n = Float(r & 0xFFFF) + Float((r >> 16) & 0xFFFF) + Float((r >> 32) & 0xFFFF) + Float(r >> 48)
                let noise = (n / 65535 - 2) * 1.7320508 * noiseScale
                let value = (bg + span * powf(film, gamma)) * heel + noise
                pixels[py * w + px] = UInt8(max(0, min(255, value.rounded())))
            }
        }

        addCollimatorBorders(&pixels, width: w, height: h, random: &random)
        addLabels(&pixels, width: w, height: h, random: &random)
        return GrayImage(width: w, height: h, pixels: pixels)
    }

    /// Bright bands along some edges, where the collimator shuttered the beam and the plate stayed unexposed.
    private static func addCollimatorBorders(_ pixels: inout [UInt8], width w: Int, height h: Int, random: inout CounterRandom) {
        for side in 0..<4 where random.unit() < 0.6 {
            let extent = side < 2 ? h : w
            let thickness = Int(Double(extent) * random.uniform(0.005, 0.035)) + 1
            let value = UInt8(random.uniform(190, 250))
            for i in 0..<thickness {
                let fade = UInt8(min(255, Double(value) * (0.85 + 0.15 * Double(i) / Double(thickness))))
                switch side {
                case 0: for x in 0..<w { pixels[i * w + x] = max(pixels[i * w + x], fade) }                  // top
                case 1: for x in 0..<w { pixels[(h - 1 - i) * w + x] = max(pixels[(h - 1 - i) * w + x], fade) } // bottom
                case 2: for y in 0..<h { pixels[y * w + i] = max(pixels[y * w + i], fade) }                  // left
                default: for y in 0..<h { pixels[y * w + w - 1 - i] = max(pixels[y * w + w - 1 - i], fade) }    // right
                }
            }
        }
    }

    /// A side marker ("L") and one or two text labels in the corners, burnt into the image.
    private static func addLabels(_ pixels: inout [UInt8], width w: Int, height h: Int, random: inout CounterRandom) {
        // Sized and placed so that the default 5% crop removes most of them, as on real plates.
        let scale = max(2, Int(Double(min(w, h)) * random.uniform(0.003, 0.0055)))
        let value = UInt8(random.uniform(215, 255))
        let margin = Int(Double(min(w, h)) * random.uniform(0.004, 0.012))
        // Side marker in a box, top left or top right.
        let markerRight = random.unit() < 0.5
        let boxSize = 9 * scale
        let bx = markerRight ? w - margin - boxSize : margin
        let by = margin
        for i in 0..<boxSize {
            for t in 0..<max(1, scale / 2) {
                for (x, y) in [(bx + i, by + t), (bx + i, by + boxSize - 1 - t), (bx + t, by + i), (bx + boxSize - 1 - t, by + i)]
                where x >= 0 && x < w && y >= 0 && y < h {
                    pixels[y * w + x] = value
                }
            }
        }
        BitmapFont.draw("L", x: bx + 2 * scale, y: by + scale, scale: scale, value: value, into: &pixels, width: w, height: h)
        // Accession-like text in another corner.
        let count = 1 + Int(random.next() % 2)
        for label in 0..<count {
            let length = 4 + Int(random.next() % 6)
            let text = String((0..<length).map { _ in BitmapFont.labelCharacters[Int(random.next() % UInt64(BitmapFont.labelCharacters.count))] })
            let textScale = max(2, scale * 2 / 3)
            let tw = BitmapFont.width(of: text, scale: textScale)
            let bottom = label == 0 ? random.unit() < 0.7 : true
            let x = (markerRight ? margin : w - margin - tw)
            let y = bottom ? h - margin - 7 * textScale - label * 9 * textScale : by + label * 9 * textScale
            BitmapFont.draw(text, x: max(0, x), y: max(0, y), scale: textScale, value: value, into: &pixels, width: w, height: h)
        }
    }
}
