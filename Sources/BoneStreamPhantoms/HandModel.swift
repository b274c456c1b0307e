import Foundation

/// A 2-D point in hand coordinates: y runs from the wrist crease (0) to the middle fingertip (1),
/// x across the hand with the thumb on +x (a left hand seen postero-anteriorly).
public struct HandPoint: Sendable {
    public var x: Double
    public var y: Double

    public init(_ x: Double, _ y: Double) {
        self.x = x
        self.y = y
    }

    static func + (a: HandPoint, b: HandPoint) -> HandPoint { HandPoint(a.x + b.x, a.y + b.y) }
    static func * (a: HandPoint, s: Double) -> HandPoint { HandPoint(a.x * s, a.y * s) }
}

/// One radiographic primitive. Its attenuation at a point is `density` times the thickness of the
/// solid it stands for, so overlapping structures add up as they do on film.
public enum Primitive: Sendable {
    /// A tapered round rod from `a` to `b` (a bone shaft or finger), radius `radius` at the ends and
    /// `radius * (1 - waist)` at the middle; with `hollow` > 0 the inner `hollow` share of the radius
    /// is medulla at `medulla` times the density (cortex looks brighter at the edges).
    case rod(a: HandPoint, b: HandPoint, radius: Double, waist: Double, density: Double, hollow: Double, medulla: Double)
    /// An ellipsoid seen from above: centre, semi-axes in the plane (the major one at `angle` radians
    /// from +x), half its thickness (`depth`, nil for the minor semi-axis) and density.
    case blob(centre: HandPoint, semiMajor: Double, semiMinor: Double, angle: Double, depth: Double?, density: Double)
}

/// The anatomy of a phantom hand at a given skeletal maturity.
///
/// Maturity signals follow the order of ossification in Greulich & Pyle's atlas: carpal bones
/// appear one by one (capitate and hamate in infancy, ..., pisiform near ten years), epiphyses
/// appear, widen to cap their metaphyses, and their growth plates narrow and fuse (distal phalanges
/// first, radius last); the thumb's sesamoid appears at puberty; bones lengthen and their cortex
/// thickens.
public struct HandModel: Sendable {
    /// Skeletal maturity: 0 at birth, 1 at adult (about 228 months for a boy).
    public let maturity: Double
    /// Per-subject shape variation, each about 1.
    public let fingerSpread: Double
    public let boneWidth: Double

    public init(maturity: Double, fingerSpread: Double = 1, boneWidth: Double = 1) {
        self.maturity = maturity
        self.fingerSpread = fingerSpread
        self.boneWidth = boneWidth
    }

    /// Maturity of a subject: bone age scaled by sex, since girls' skeletons reach each stage earlier.
    public static func maturity(boneAgeMonths: Double, male: Bool) -> Double {
        let months = boneAgeMonths * (male ? 1.0 : 1.1)
        return min(1.1, max(0, months / 228))
    }

    private func clamp01(_ v: Double) -> Double { min(1, max(0, v)) }

    /// Progress of a process that starts at maturity `start` and completes at `end`.
    private func stage(_ start: Double, _ end: Double) -> Double { clamp01((maturity - start) / (end - start)) }

    /// Soft tissue first, then bones.
    public func primitives() -> [Primitive] {
        var out: [Primitive] = []
        let m = maturity
        let growth = 0.85 + 0.15 * stage(0, 0.9)     // bones lengthen relative to the hand
        let width = boneWidth * (0.85 + 0.15 * stage(0, 0.8))
        let cortex = 0.25 + 0.25 * stage(0, 1)      // cortical share of the radius
        let density = 3.2 + 1.6 * stage(0, 1)
        let soft = 0.55

        // Forearm, palm and wrist soft tissue.
        out.append(.rod(a: HandPoint(0.0, -0.6), b: HandPoint(0.0, 0.05), radius: 0.17, waist: 0, density: soft, hollow: 0, medulla: 1))
        out.append(.blob(centre: HandPoint(0.0, 0.24), semiMajor: 0.27, semiMinor: 0.215, angle: .pi / 2, depth: 0.07, density: soft))

        // Radius and ulna with their distal epiphyses.
        out += longBone(base: HandPoint(0.075, -0.55), tip: HandPoint(0.07, -0.035), radius: 0.05 * width,
                        density: density, cortex: cortex, epiphysisAtTip: true, appear: 0.04, fuse: 0.85)
        out += longBone(base: HandPoint(-0.085, -0.55), tip: HandPoint(-0.08, -0.05), radius: 0.034 * width,
                        density: density, cortex: cortex, epiphysisAtTip: true, appear: 0.33, fuse: 0.82)

        // Carpal bones in the order they ossify: (x, y, full semi-axes, angle, appears at).
        let carpals: [(Double, Double, Double, Double, Double, Double)] = [
            (0.005, 0.060, 0.038, 0.027, 1.4, 0.01),   // capitate
            (-0.055, 0.065, 0.030, 0.024, 1.2, 0.015), // hamate
            (-0.075, 0.015, 0.024, 0.020, 0.5, 0.13),  // triquetrum
            (-0.020, 0.005, 0.026, 0.022, 0.2, 0.18),  // lunate
            (0.085, 0.060, 0.025, 0.021, 0.9, 0.24),   // trapezium
            (0.050, 0.075, 0.020, 0.017, 1.3, 0.26),   // trapezoid
            (0.050, 0.005, 0.032, 0.019, 0.6, 0.27),   // scaphoid
            (-0.095, 0.035, 0.014, 0.012, 0.0, 0.50),  // pisiform
        ]
        for (x, y, a, b, angle, appears) in carpals where m > appears {
            let size = 1.3 * (0.2 + 0.8 * stage(appears, appears + 0.4))
            out.append(.blob(centre: HandPoint(x, y), semiMajor: a * size * width, semiMinor: b * size * width,
                             angle: angle, depth: nil, density: density * 0.8))
        }

        // Fingers 2-5: metacarpal base, direction (radians from +y toward +x), bone lengths, width.
        let fingers: [(HandPoint, Double, [Double], Double)] = [
            (HandPoint(0.060, 0.110), 0.10, [0.300, 0.225, 0.135, 0.095], 1.00),
            (HandPoint(0.015, 0.115), 0.01, [0.315, 0.240, 0.150, 0.100], 1.02),
            (HandPoint(-0.030, 0.110), -0.09, [0.285, 0.225, 0.140, 0.095], 0.95),
            (HandPoint(-0.070, 0.100), -0.19, [0.255, 0.180, 0.110, 0.085], 0.85),
        ]
        for (base, angle, lengths, scale) in fingers {
            out += finger(base: base, angle: angle * fingerSpread, lengths: lengths.map { $0 * growth },
                          radii: [0.021, 0.019, 0.016, 0.012].map { $0 * scale * width },
                          density: density, cortex: cortex, thumb: false)
        }
        // Thumb: metacarpal, proximal and distal phalanx, at a wide angle.
        out += finger(base: HandPoint(0.105, 0.085), angle: 0.62 * fingerSpread, lengths: [0.19, 0.15, 0.11].map { $0 * growth },
                      radii: [0.022, 0.019, 0.014].map { $0 * width }, density: density, cortex: cortex, thumb: true)
        return out
    }

    /// A finger: soft tissue around it, then its bones from the metacarpal out.
    private func finger(base: HandPoint, angle: Double, lengths: [Double], radii: [Double],
                        density: Double, cortex: Double, thumb: Bool) -> [Primitive] {
        let direction = HandPoint(sin(angle), cos(angle))
        let gap = 0.012  // joint space
        var out: [Primitive] = []
        let total = lengths.reduce(0, +) + gap * Double(lengths.count)
        let fingerStart = base + direction * lengths[0] * 0.55
        out.append(.rod(a: fingerStart, b: base + direction * (total + 0.02), radius: radii[1] * 2.0,
                        waist: -0.05, density: 0.55, hollow: 0, medulla: 1))
        // (appear, fuse) maturities of the epiphyses, metacarpal first.
        let timing: [(Double, Double)] = thumb
            ? [(0.09, 0.78), (0.08, 0.76), (0.10, 0.70)]
            : [(0.08, 0.78), (0.08, 0.76), (0.10, 0.75), (0.11, 0.70)]
        var start = base
        for (i, length) in lengths.enumerated() {
            let end = start + direction * length
            // Metacarpals 2-5 carry the epiphysis distally; the thumb's metacarpal and all phalanges proximally.
            let distal = i == 0 && !thumb
            let isDistalPhalanx = i == lengths.count - 1
            out += longBone(base: start, tip: end, radius: radii[i], density: density, cortex: cortex,
                            epiphysisAtTip: distal, appear: timing[i].0, fuse: timing[i].1,
                            tuft: isDistalPhalanx)
            start = end + direction * gap
        }
        if thumb && maturity > 0.55 {
            // The adductor sesamoid of the thumb's MCP joint: a classic sign of puberty.
            let size = 0.3 + 0.7 * stage(0.55, 0.75)
            let joint = base + direction * lengths[0]
            out.append(.blob(centre: joint + HandPoint(direction.y, -direction.x) * (-0.012), semiMajor: 0.009 * size,
                             semiMinor: 0.008 * size, angle: 0, depth: nil, density: density))
        }
        return out
    }

    /// A long bone: its shaft (diaphysis and metaphysis) and, at one end, an epiphysis that appears,
    /// grows to cap the shaft, and fuses with it across a growth plate that narrows to nothing.
    private func longBone(base: HandPoint, tip: HandPoint, radius: Double, density: Double, cortex: Double,
                          epiphysisAtTip: Bool, appear: Double, fuse: Double, tuft: Bool = false) -> [Primitive] {
        let dx = tip.x - base.x, dy = tip.y - base.y
        let length = (dx * dx + dy * dy).squareRoot()
        let axis = HandPoint(dx / length, dy / length)
        let m = maturity
        let epiphysisHeight = radius * 0.9
        let plate = radius * 0.55 * (1 - stage(appear, fuse))  // growth plate width
        var out: [Primitive] = []
        // Before fusion the epiphysis and growth plate take the end of the bone's length.
        let reserve = m < fuse ? epiphysisHeight + plate : 0
        let shaftBase = epiphysisAtTip ? base : base + axis * reserve
        let shaftTip = epiphysisAtTip ? tip + axis * (-reserve) : tip
        out.append(.rod(a: shaftBase, b: shaftTip, radius: radius, waist: tuft ? 0.25 : 0.3, density: density,
                        hollow: 1 - cortex, medulla: 0.45))
        if m > appear {
            // Width grows from a small nucleus to a full cap (slightly wider than the metaphysis).
            let widthShare = 0.25 + 0.85 * stage(appear, fuse)
            let centre = epiphysisAtTip
                ? shaftTip + axis * (plate + epiphysisHeight * 0.5)
                : shaftBase + axis * (-(plate + epiphysisHeight * 0.5))
            let angle = atan2(axis.x, axis.y)  // rotate the blob's major axis across the bone
            out.append(.blob(centre: centre, semiMajor: radius * min(1.15, widthShare), semiMinor: epiphysisHeight * 0.5 * (0.5 + 0.5 * min(1, widthShare)),
                             angle: -angle, depth: nil, density: density * 0.95))
        }
        return out
    }
}
