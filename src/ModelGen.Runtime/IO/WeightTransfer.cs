using System;
using System.Linq;

namespace ModelGen;

public static partial class ModelExtensions
{
    /// <summary>
    /// Copies the named layers' weights (moving statistics included) from another model, in memory: how a pretrained backbone
    /// moves into a model with a new head or other layers frozen (two model classes that name their shared layers alike).
    /// Every tensor is checked (present in both, same shape) before any is copied, so a mismatch changes nothing.
    /// </summary>
    public static void CopyWeightsFrom(this IModel target, IModel source, params string[] layers)
    {
        if (layers.Length == 0) throw new ArgumentException($"{target.Name}: name the layers to copy from {source.Name}.", nameof(layers));
        var pairs = layers.SelectMany(name =>
        {
            var to = target.Layers.FirstOrDefault(l => l.Name == name)
                ?? throw new ArgumentException($"{target.Name} has no layer '{name}' to copy into (its layers: {string.Join(", ", target.Layers.Select(l => l.Name))}).", nameof(layers));
            var from = source.Layers.FirstOrDefault(l => l.Name == name)
                ?? throw new ArgumentException($"{source.Name} has no layer '{name}' to copy from (its layers: {string.Join(", ", source.Layers.Select(l => l.Name))}).", nameof(layers));
            return to.Parameters.Select(parameter =>
            {
                var match = from.Parameters.FirstOrDefault(p => p.Name == parameter.Name);
                if (match is null || !match.Shape.SequenceEqual(parameter.Shape))
                {
                    throw new ArgumentException($"{target.Name}: layer '{name}' expects '{parameter.Name}' of shape {parameter.ShapeText}, but {source.Name} has " +
                        (match is null ? "no such tensor" : $"shape {match.ShapeText}") + ".", nameof(layers));
                }
                return (From: match, To: parameter);
            }).ToList();
        }).ToList();
        foreach (var (from, to) in pairs) from.Values.CopyTo(to.Values);
    }
}
